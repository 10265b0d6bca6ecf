"""Hardening: no secret and no token leaks anywhere but the answer itself.

Sentinel secrets go in (a client secret, a wrong client secret, a user token, a refresh
token, token-like strings in menda-cloud's bodies); a set of scenarios runs in process and through a daemon
logging at debug level; then every output is searched for every secret and every token
the fake issued. Only the stdout of a successful ``keyring get`` may hold a registry
token, and only the token cache file may hold a Menda access token or a refresh token. No
registry token is ever written under HOME.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import (
    CA_URL,
    KEYRING,
    base_env,
    sentinel,
    short_tmpdir,
    write_profile,
    write_user_login,
    write_user_token,
)
from tests.support.errors import typed_error
from tests.support.procs import Run, credd, keyring_get, run

MODES = ("in-process", "daemon")


@dataclass
class Lab:
    cloud: FakeMendaCloud
    home: Path
    tmp: Path
    daemon: Daemon
    secret: str
    user_token: str
    extra_secrets: set[str] = field(default_factory=set)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (where, text)
    answers: list[tuple[str, str]] = field(default_factory=list)  # (where, stdout of a success)

    def env(self, mode: str, **extra: str) -> dict[str, str]:
        env = base_env(self.home, MENDA_KEYRING_TIMEOUT="10", **extra)
        if mode == "daemon":
            env["MENDA_CREDD_SOCKET"] = self.daemon.socket
        else:
            env["MENDA_CREDD"] = "off"
        return env

    def record(self, where: str, result: Run, success: bool) -> Run:
        if success:
            assert result.ok, f"{where}\n{result.describe()}"
            self.answers.append((where, result.stdout))
        else:
            assert not result.ok, f"{where}\n{result.describe()}"
            assert typed_error(result.stderr)[0], f"{where}: no typed error\n{result.describe()}"
            self.outputs.append((f"{where} stdout", result.stdout))
        self.outputs.append((f"{where} stderr", result.stderr))
        return result

    def new_domain(self) -> str:
        domain = f"d{secrets.token_hex(3)}"
        self.cloud.add_domain(domain, "058264169513")
        return CA_URL.replace("menda-private", domain)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    secret = sentinel("SECRET")
    with short_tmpdir() as tmp, FakeMendaCloud() as cloud:
        cloud.add_client("ci-bot", secret)
        home = tmp_path / "home"
        home.mkdir()
        write_profile(
            home,
            f"[default]\nhost = {cloud.url}\nauth_type = m2m\nclient_id = ci-bot\n"
            f"client_secret = {secret}\n\n[user]\nhost = {cloud.url}\nauth_type = u2m\n"
            f"\n[refresher]\nhost = {cloud.url}\nauth_type = u2m\n",
        )
        user_token, expires_at = cloud.issue_user_token("alice")
        write_user_token(home, "user", user_token, expires_at, cloud.url)
        # An expired login with a sentinel refresh token: every use of it refreshes.
        cloud.configure(user_token_lifetime=30)
        login = cloud.issue_user_login("robin", lifetime=0, refresh_token=sentinel("REFRESH"))
        write_user_login(home, "refresher", login, cloud.url)
        daemon_home = tmp / "daemon-home"
        with Daemon(base_env(daemon_home), tmp / "run" / "credd.sock") as daemon:
            yield Lab(cloud, home, tmp, daemon, secret, user_token)


def _files(root: Path) -> Iterator[Path]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def test_no_secret_or_token_leaks_anywhere(lab: Lab) -> None:
    cloud = lab.cloud
    wrong = sentinel("WRONG")
    fake_token = "caat_" + sentinel("BODYTOKEN")
    lab.extra_secrets |= {wrong, fake_token}

    for mode in MODES:
        # Successful answers: profile m2m, u2m, the env trio, creds and JSON output modes.
        lab.record(f"{mode} m2m", keyring_get(lab.env(mode)), success=True)
        lab.record(f"{mode} u2m", keyring_get(lab.env(mode, MENDA_PROFILE_ID="user")), True)
        trio_id = f"trio-{mode}"
        cloud.add_client(trio_id, lab.secret)
        trio = lab.env(
            mode, MENDA_CLIENT_ID=trio_id, MENDA_CLIENT_SECRET=lab.secret, MENDA_HOST=cloud.url
        )
        lab.record(f"{mode} trio", keyring_get(trio), True)
        creds = run([KEYRING, "--mode", "creds", "--output", "json", "get", CA_URL], trio)
        lab.record(f"{mode} creds json", creds, True)

        # Failures, each on a domain or client nothing is cached for.
        cloud.inject("registry", status=403)
        lab.record(f"{mode} 403", keyring_get(lab.env(mode), lab.new_domain()), False)
        cloud.inject("registry", status=500, times=4)
        lab.record(f"{mode} 500", keyring_get(lab.env(mode), lab.new_domain()), False)
        cloud.inject("registry", status=200, body={"token": fake_token, "expiration": "soon"})
        lab.record(f"{mode} wrong shape", keyring_get(lab.env(mode), lab.new_domain()), False)
        cloud.inject("registry", expired=True)
        lab.record(f"{mode} expired", keyring_get(lab.env(mode), lab.new_domain()), False)
        user = lab.env(mode, MENDA_PROFILE_ID="user")
        cloud.inject("registry", status=401)
        lab.record(f"{mode} u2m 401", keyring_get(user, lab.new_domain()), False)
        bad = lab.env(
            mode, MENDA_CLIENT_ID=f"bad-{mode}", MENDA_CLIENT_SECRET=wrong, MENDA_HOST=cloud.url
        )
        cloud.add_client(f"bad-{mode}", lab.secret)
        lab.record(f"{mode} wrong secret", keyring_get(bad), False)
        # menda-cloud echoing the secret it was sent in its error description.
        echo_id = f"echo-{mode}"
        cloud.add_client(echo_id, lab.secret)
        cloud.inject(
            "oauth",
            status=400,
            body={"error": "invalid_request", "error_description": f"bad secret {lab.secret}"},
        )
        echo = lab.env(
            mode, MENDA_CLIENT_ID=echo_id, MENDA_CLIENT_SECRET=lab.secret, MENDA_HOST=cloud.url
        )
        lab.record(f"{mode} echoed secret", keyring_get(echo), False)
        # Refreshing a login: a success (which rotates the sentinel), and a refusal that
        # echoes the refresh token it was sent.
        refresher = lab.env(mode, MENDA_PROFILE_ID="refresher")
        lab.record(f"{mode} refresh", keyring_get(refresher, lab.new_domain()), True)
        live = [t for t, e in cloud.refresh_tokens.items() if not e.used and not e.revoked]
        cloud.inject(
            "refresh",
            status=400,
            body={"error": "invalid_grant", "error_description": f"dead: {' '.join(live)}"},
        )
        lab.record(f"{mode} refresh refused", keyring_get(refresher, lab.new_domain()), False)
        cloud.clear_faults()

    for args in (["status"], ["status", "--json"]):
        result = credd(*args, "--socket", lab.daemon.socket, env=lab.daemon.env)
        assert result.returncode == 0, result.describe()
        lab.outputs.append((f"menda-credd {' '.join(args)}", result.stdout + result.stderr))
    lab.daemon.stop()
    log = lab.daemon.log()
    assert "DEBUG" in log, "the daemon ran at debug level"
    lab.outputs.append(("daemon debug log", log))

    registry_tokens = {t["token"] for t in cloud.registry_tokens()}
    # Menda access tokens and refresh tokens: at home in the token cache file only.
    refresh_tokens = set(cloud.refresh_tokens)
    access_tokens = set(cloud.access_tokens) | refresh_tokens
    assert lab.user_token in access_tokens
    assert any(t.startswith("SENTINEL-REFRESH-") for t in refresh_tokens)
    assert len(refresh_tokens) >= 3  # the sentinel, rotated in both modes
    assert registry_tokens and len(access_tokens) >= 3
    secrets_ = {lab.secret, *lab.extra_secrets}
    everything = secrets_ | registry_tokens | access_tokens

    leaks = [
        f"{what!r} in {where}" for where, text in lab.outputs for what in everything if what in text
    ]
    # Answers hold one registry token (and the user name), nothing else secret.
    for where, stdout in lab.answers:
        held = [t for t in registry_tokens if t in stdout]
        if len(held) != 1:
            leaks.append(f"{where}: expected one registry token on stdout, got {stdout!r}")
        leaks += [
            f"{what!r} in {where} stdout" for what in secrets_ | access_tokens if what in stdout
        ]

    # Files: no registry token anywhere; access tokens only in the token cache; the
    # client secret only in the profile file the test wrote.
    cache_name = ".token"
    for root in (lab.home, lab.tmp):
        for path in _files(root):
            data = path.read_bytes().decode("utf-8", "replace")
            for token in registry_tokens:
                if token in data:
                    leaks.append(f"registry token in file {path}")
            if path.name != cache_name:
                leaks += [f"access token in file {path}" for t in access_tokens if t in data]
            if path != lab.home / ".menda" / "mendacfg":
                leaks += [f"a secret in file {path}" for s in secrets_ if s in data]
    assert not leaks, "\n".join(leaks)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("identity", ["u2m", "m2m"])
def test_an_access_token_echoed_by_menda_cloud_is_not_shown(
    lab: Lab, mode: str, identity: str
) -> None:
    """menda-cloud (or a gateway before it) echoing the bearer token in an error body
    must not put the Menda access token on the terminal or in CI logs."""
    env = lab.env(mode, MENDA_PROFILE_ID="user") if identity == "u2m" else lab.env(mode)
    if identity == "u2m":
        access = lab.user_token
    else:
        lab.record("prime", keyring_get(env), success=True)
        (access,) = [t for t, e in lab.cloud.access_tokens.items() if e.identity == "client:ci-bot"]
    lab.cloud.inject(
        "registry",
        status=403,
        body={"error": "forbidden", "message": f"token {access} may not use this domain"},
    )
    result = keyring_get(env, lab.new_domain())
    assert typed_error(result.stderr)[0] == "MendaCloudAPIError", result.describe()
    assert "HTTP 403" in result.stderr
    assert access not in result.stderr + result.stdout, result.describe()
    lab.daemon.stop()
    assert access not in lab.daemon.log()
