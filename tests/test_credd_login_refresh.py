"""A real menda-credd refreshing signed-in users' logins, driven by the real keyring CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import base_env, read_cache_entries, write_profile, write_user_login
from tests.support.procs import keyring_get, keyring_herd
from tests.support.waiting import wait_until


@pytest.fixture
def env(home: Path, sockdir: Path) -> dict[str, str]:
    return base_env(home, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))


@pytest.fixture
def daemon(env: dict[str, str]) -> Iterator[Daemon]:
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as running:
        yield running


def sign_in(cloud: FakeMendaCloud, home: Path, user: str = "alice", lifetime: int = 0) -> Any:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    login = cloud.issue_user_login(user, lifetime=lifetime)
    write_user_login(home, "default", login, cloud.url)
    return login


def test_the_daemon_refreshes_an_expired_login_once_and_then_answers_from_memory(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    login = sign_in(cloud, home)
    first = keyring_get(env)
    assert cloud.is_valid_registry_token(first.token)
    assert cloud.counts()["refresh_ok"] == 1
    entry = read_cache_entries(home)["u2m:default"]
    assert entry["refresh_token"] != login["refresh_token"]
    assert cloud.refresh_token_state(entry["refresh_token"]) == "live"
    # Its own refresh does not look like a new login: the registry token is served on.
    assert keyring_get(env).token == first.token
    counters = daemon.counters()
    assert counters["login_refreshes"] == 1 and counters["hits"] == 1
    assert counters["entries_dropped"] == 0
    assert cloud.counts()["registry"] == 1 and cloud.counts()["refresh"] == 1


def test_thirty_two_processes_through_the_daemon_make_one_refresh(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    sign_in(cloud, home)
    runs = keyring_herd(env | {"MENDA_KEYRING_TIMEOUT": "120"}, 32, timeout=240)
    assert [r.returncode for r in runs] == [0] * 32, "\n".join(r.describe() for r in runs)
    assert all(cloud.is_valid_registry_token(r.token) for r in runs)
    assert cloud.counts()["refresh"] == cloud.counts()["refresh_ok"] == 1


def test_the_daemon_serves_on_while_a_login_cannot_be_refreshed(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    cloud.configure(user_token_lifetime=62)  # refreshed tokens run out (60 s margin) at once
    sign_in(cloud, home)
    token = keyring_get(env).token
    expires_at = read_cache_entries(home)["u2m:default"]["expires_at"]
    wait_until(lambda: time.time() > expires_at - 59, timeout=10, what="the access token to age")
    cloud.inject("refresh", status=503, times=50)
    hits = daemon.counters()["hits"]
    again = keyring_get(env)
    assert again.token == token, again.describe()
    assert daemon.counters()["hits"] == hits + 1
    assert cloud.counts()["refresh"] == 1  # the registry token needed no access token


def test_a_rejected_user_token_is_refreshed_once_through_the_daemon(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    login = sign_in(cloud, home, lifetime=3600)
    cloud.revoke(login["access_token"])
    assert cloud.is_valid_registry_token(keyring_get(env).token)
    counts = cloud.counts()
    assert (counts["refresh"], counts["registry"], counts["registry_ok"]) == (1, 2, 1)


def test_a_new_login_after_a_refresh_gets_its_own_tokens(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    sign_in(cloud, home, "alice")
    alice = keyring_get(env).token
    sign_in(cloud, home, "bob", lifetime=3600)  # menda auth login, as bob
    bob = keyring_get(env).token
    assert bob != alice and cloud.is_valid_registry_token(bob)
    (issued,) = [t for t in cloud.registry_tokens() if t["token"] == bob]
    assert issued["identity"] == "user:bob"
    assert daemon.counters()["entries_dropped"] == 1
