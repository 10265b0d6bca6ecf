"""The daemon answers exactly what in-process resolution answers: same tokens' validity,
same error class and same message, case by case, through the real keyring CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, base_env, short_tmpdir, write_profile, write_user_token
from tests.support.errors import typed_error
from tests.support.procs import keyring_get

SECRET = "parity-sentinel-secret-93af"
UNKNOWN_DOMAIN_URL = CA_URL.replace("menda-private-", "nosuch-")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeMendaCloud, Daemon]]:
    home = tmp_path_factory.mktemp("daemon-home")
    with short_tmpdir() as tmp, FakeMendaCloud() as cloud:
        for client in ("env-ok", "profile-ok", "forbidden", "flaky"):
            cloud.add_client(client, SECRET)
        cloud.forbid("client:forbidden", "menda-private")
        daemon = Daemon(base_env(home), tmp / "run" / "c.sock").start()
        try:
            yield cloud, daemon
        finally:
            assert daemon.stop() == 0, daemon.log()


def trio(cloud: FakeMendaCloud, client: str, secret: str = SECRET) -> dict[str, str]:
    return {"MENDA_CLIENT_ID": client, "MENDA_CLIENT_SECRET": secret, "MENDA_HOST": cloud.url}


def profile(home: Path, body: str) -> None:
    write_profile(home, body)


# Each case prepares a home and returns (extra env, service, error class or None).
Case = Callable[[FakeMendaCloud, Path], tuple[dict[str, str], str, str | None]]


def env_m2m(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return trio(cloud, "env-ok"), CA_URL, None


def profile_m2m(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(
        home,
        f"[work]\nhost = {cloud.url}/\nauth_type = m2m\n"
        f"client_id = profile-ok\nclient_secret = {SECRET}\n",
    )
    return {"MENDA_PROFILE_ID": "work"}, CA_URL, None


def u2m(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\n")
    token, expires = cloud.issue_user_token("alice")
    write_user_token(home, "default", token, expires, cloud.url)
    return {}, CA_URL, None


def no_config(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return {}, CA_URL, "ConfigFileNotFoundError"


def no_profile(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\n")
    return {"MENDA_PROFILE_ID": "nope"}, CA_URL, "ProfileNotFoundError"


def no_host(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, "[default]\nauth_type = u2m\n")
    return {}, CA_URL, "ProfileMissingHostError"


def http_host(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, "[default]\nhost = http://menda.example.com\n")
    return {}, CA_URL, "InvalidHostError"


def half_m2m(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\nauth_type = m2m\nclient_id = x\n")
    return {}, CA_URL, "MissingClientCredentialsError"


def bad_auth_type(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\nauth_type = saml\n")
    return {}, CA_URL, "ConfigError"


def bad_ini(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, "host = nowhere\n[default]\n")
    return {}, CA_URL, "ConfigError"


def no_login(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\n")
    return {}, CA_URL, "NoCachedLoginError"


def revoked_login(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    profile(home, f"[default]\nhost = {cloud.url}\n")
    token, expires = cloud.issue_user_token("bob")
    write_user_token(home, "default", token, expires, cloud.url)
    cloud.revoke(token)
    return {}, CA_URL, "NoCachedLoginError"


def bad_secret(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return trio(cloud, "env-ok", "wrong-secret"), CA_URL, "MendaCloudAPIError"


def forbidden(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return trio(cloud, "forbidden"), CA_URL, "MendaCloudAPIError"


def unknown_domain(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return trio(cloud, "env-ok"), UNKNOWN_DOMAIN_URL, "MendaCloudAPIError"


def unavailable(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    cloud.inject("registry", status=503, times=4)  # every attempt of one resolution
    return trio(cloud, "flaky"), CA_URL, "MendaCloudAPIError"


def bad_timeout(cloud: FakeMendaCloud, home: Path) -> tuple[dict[str, str], str, str | None]:
    return {**trio(cloud, "env-ok"), "MENDA_KEYRING_TIMEOUT": "soon"}, CA_URL, "ConfigError"


CASES = [
    env_m2m,
    profile_m2m,
    u2m,
    no_config,
    no_profile,
    no_host,
    http_host,
    half_m2m,
    bad_auth_type,
    bad_ini,
    no_login,
    revoked_login,
    bad_secret,
    forbidden,
    unknown_domain,
    unavailable,
    bad_timeout,
]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_daemon_and_in_process_give_the_same_answer(
    world: tuple[FakeMendaCloud, Daemon], tmp_path: Path, case: Case
) -> None:
    cloud, daemon = world
    answers = {}
    for mode in ("daemon", "in-process"):
        home = tmp_path / mode
        home.mkdir()
        extra, service, expected_error = case(cloud, home)
        env = base_env(home, MENDA_CREDD_SOCKET=daemon.socket, **extra)
        if mode == "in-process":
            env["MENDA_CREDD"] = "off"
        requests_before = daemon.counters()["requests"]
        result = keyring_get(env, service)
        if mode == "daemon":
            assert daemon.counters()["requests"] == requests_before + 1, "the daemon answered"
        else:
            assert daemon.counters()["requests"] == requests_before, "the daemon was not asked"
        answers[mode] = result
        assert SECRET not in result.stdout, "the client secret on stdout"
        assert SECRET not in result.stderr, "the client secret on stderr"
        if expected_error is None:
            assert result.returncode == 0, result.stderr
            assert cloud.is_valid_registry_token(result.stdout.strip())
        else:
            assert result.returncode == 1
            assert typed_error(result.stderr)[0] == expected_error, result.stderr
    daemon_line = str(typed_error(answers["daemon"].stderr))
    local_line = str(typed_error(answers["in-process"].stderr))
    # Homes differ by name only: compare with the folder names made equal.
    assert daemon_line.replace("/daemon/", "/X/") == local_line.replace("/in-process/", "/X/")
    assert answers["daemon"].returncode == answers["in-process"].returncode
