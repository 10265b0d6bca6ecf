"""Hardening: bad configuration through the real keyring CLI gives one clear typed error
naming the file (and the profile, when one is involved), the same through the daemon and
in process, and never a traceback."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.env import base_env, short_tmpdir, write_profile, write_user_token
from tests.support.errors import typed_error
from tests.support.procs import Run, keyring_get

SECRET = "SENTINEL-SECRET-config-" + secrets.token_hex(4)
#: uv shows keyring's stderr to the user twice per index: an error must stay readable.
MAX_STDERR = 4096


@dataclass
class Bad:
    name: str
    config: str | bytes | None  # None: no file; "" an empty one
    error: str | tuple[str, ...]
    fragments: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    profile: str | None = "default"  # the profile the message must name (None: file-level)
    names_file: bool = True
    login_host: str | None = None  # write a fresh user login for this host first


UNICODE_PROFILE = "prøfil-✓-ü"
CASES = [
    Bad(
        "no-section-header",
        "host = https://a.example\n",
        "ConfigError",
        ("not valid INI",),
        profile=None,
    ),
    Bad(
        "broken-section-header",
        "[default\nhost = https://a.example\n",
        "ConfigError",
        ("not valid INI",),
        profile=None,
    ),
    Bad(
        "line-without-delimiter",
        "[default]\nhost = https://a.example\njust words\n",
        "ConfigError",
        ("not valid INI", "line 3"),
        profile=None,
    ),
    Bad(
        "duplicate-profile",
        "[default]\nhost = https://a.example\n[default]\n",
        "ConfigError",
        ("appears twice",),
    ),
    Bad(
        "duplicate-key",
        "[default]\nhost = https://a.example\nhost = https://b.example\n",
        "ConfigError",
        ("appears twice",),
    ),
    Bad("empty-file", "", "ProfileNotFoundError", ("none",)),
    Bad(
        "missing-profile",
        "[other]\nhost = https://a.example\n",
        "ProfileNotFoundError",
        ("[ci]", "other"),
        env={"MENDA_PROFILE_ID": "ci"},
        profile="ci",
    ),
    Bad("empty-host", "[default]\nhost =\n", "ProfileMissingHostError", ("has no host",)),
    Bad("no-host", "[default]\nauth_type = m2m\n", "ProfileMissingHostError", ("has no host",)),
    Bad(
        "host-without-scheme",
        "[default]\nhost = api.example.menda.cloud\n",
        "InvalidHostError",
        ("https://",),
    ),
    Bad(
        "http-not-loopback",
        "[default]\nhost = http://api.example.menda.cloud\n",
        "InvalidHostError",
        ("only https:// is allowed",),
    ),
    Bad("ftp-host", "[default]\nhost = ftp://a.example\n", "InvalidHostError", ("https://",)),
    Bad(
        "host-with-userinfo",
        "[default]\nhost = https://me:pw@a.example\n",
        "InvalidHostError",
        ("user information",),
    ),
    Bad(
        "host-with-space",
        "[default]\nhost = https://a.exa mple\n",
        "InvalidHostError",
        ("spaces or control characters",),
    ),
    Bad(
        "host-bad-port",
        "[default]\nhost = https://a.example:99999\n",
        "InvalidHostError",
        ("not a valid URL",),
    ),
    Bad(
        "m2m-missing-secret",
        "[default]\nhost = https://a.example\nauth_type = m2m\nclient_id = x\n",
        "MissingClientCredentialsError",
        ("client_secret",),
    ),
    Bad(
        "m2m-empty-id",
        "[default]\nhost = https://a.example\nauth_type = m2m\nclient_id =\n"
        f"client_secret = {SECRET}\n",
        "MissingClientCredentialsError",
        ("client_id",),
    ),
    Bad(
        "unknown-auth-type",
        "[default]\nhost = https://a.example\nauth_type = saml\n",
        "ConfigError",
        ("auth_type",),
    ),
    Bad(
        "unicode-profile",
        f"[{UNICODE_PROFILE}]\nhost = ftp://a.example\n",
        "InvalidHostError",
        (),
        env={"MENDA_PROFILE_ID": UNICODE_PROFILE},
        profile=UNICODE_PROFILE,
    ),
    Bad(
        "unicode-profile-missing",
        "[default]\nhost = https://a.example\n",
        "ProfileNotFoundError",
        (),
        env={"MENDA_PROFILE_ID": UNICODE_PROFILE},
        profile=UNICODE_PROFILE,
    ),
    Bad("binary-junk", bytes(range(1, 256)) * 4, "ConfigError", ("not valid UTF-8",), profile=None),
    Bad(
        "control-characters",
        "[default]\nhost = https://a.example\x07\x1b[31m\n",
        "InvalidHostError",
        ("control characters",),
    ),
    Bad("no-file", None, "ConfigFileNotFoundError", ("menda auth configure",), profile=None),
    Bad(
        "bad-timeout",
        "[default]\nhost = https://a.example\n",
        "ConfigError",
        ("MENDA_KEYRING_TIMEOUT",),
        env={"MENDA_KEYRING_TIMEOUT": "soon"},
        profile=None,
        names_file=False,
    ),
    Bad(
        "trio-host-without-scheme",
        None,
        "InvalidHostError",
        ("MENDA_HOST",),
        env={"MENDA_CLIENT_ID": "x", "MENDA_CLIENT_SECRET": SECRET, "MENDA_HOST": "a.example"},
        profile=None,
        names_file=False,
    ),
]
LONG_HOST = "http://127.0.0.1:1/" + "x" * 100_000
LONG_LABEL = "https://" + "a" * 300 + ".example"
LONG_CASES = [
    Bad(
        "very-long-profile-name",
        "[default]\nhost = https://a.example\n",
        "ProfileNotFoundError",
        (),
        env={"MENDA_PROFILE_ID": "p" * 100_000},
        profile=None,
    ),
    Bad(
        "very-long-host",
        f"[default]\nhost = {LONG_HOST}\n",
        ("InvalidHostError", "MendaCloudAPIError"),
        (),
        profile=None,
        names_file=False,
        login_host=LONG_HOST,
    ),
    Bad(
        "hostname-label-too-long",
        f"[default]\nhost = {LONG_LABEL}\n",
        "InvalidHostError",
        (),
        login_host=LONG_LABEL,
    ),
]


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with short_tmpdir() as tmp, Daemon(base_env(tmp / "home"), tmp / "run" / "c.sock") as d:
        yield d
        assert d.alive(), d.log()


def run_both(case: Bad, daemon: Daemon, tmp_path: Path) -> tuple[Path, dict[str, Run]]:
    home = tmp_path / "home"
    home.mkdir()
    if case.config is not None:
        write_profile(home, case.config)
    if case.login_host is not None:
        write_user_token(home, "default", "mut_x", int(time.time()) + 3600, case.login_host)
    results = {}

    def one(mode: str) -> tuple[str, Run]:
        env = base_env(home, **case.env)
        if mode == "daemon":
            env["MENDA_CREDD_SOCKET"] = daemon.socket
        else:
            env["MENDA_CREDD"] = "off"
        return mode, keyring_get(env, timeout=60)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(one, ("in-process", "daemon")))
    return home / ".menda" / "mendacfg", results


def check(case: Bad, path: Path, results: dict[str, Run]) -> None:
    seen = {}
    for mode, result in results.items():
        assert result.returncode != 0, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        name, message = typed_error(result.stderr)
        expected = (case.error,) if isinstance(case.error, str) else case.error
        assert name in expected, f"{mode}: {result.describe()}"
        for fragment in case.fragments:
            assert fragment in message, f"{mode}: {fragment!r} not in {message!r}"
        if case.names_file:
            assert str(path) in message, f"{mode}: the file is not named in {message!r}"
        if case.profile is not None:
            assert f"[{case.profile}]" in message, f"{mode}: profile not named in {message!r}"
        assert SECRET not in result.stderr + result.stdout
        assert not result.stdout.strip()
        assert len(result.stderr) < MAX_STDERR, f"{mode}: {len(result.stderr)} bytes of stderr"
        seen[mode] = (name, message)
    assert seen["daemon"] == seen["in-process"], "the daemon and in process must agree"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_configuration_is_one_clear_typed_error(
    case: Bad, daemon: Daemon, tmp_path: Path
) -> None:
    before = daemon.counters()["requests"]
    path, results = run_both(case, daemon, tmp_path)
    check(case, path, results)
    assert daemon.counters()["requests"] == before + 1, "the daemon itself answered"


@pytest.mark.parametrize("case", LONG_CASES, ids=lambda c: c.name)
def test_very_long_values_are_one_short_typed_error(
    case: Bad, daemon: Daemon, tmp_path: Path
) -> None:
    path, results = run_both(case, daemon, tmp_path)
    check(case, path, results)
