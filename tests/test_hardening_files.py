"""Hardening: every folder menda-keyring or menda-credd creates is 0700 and every file 0600,
whatever the umask of the process (000 or 077); the socket is 0600 in a 0700 folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CLIENT_ID, MENDA_CREDD, base_env, sentinel, short_tmpdir
from tests.support.procs import keyring_get, run
from tests.support.waiting import wait_until

UMASKS = [0o000, 0o077]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def assert_private_tree(root: Path) -> list[Path]:
    """``root`` and everything in it: folders 0700, files and sockets 0600."""
    assert root.is_dir(), f"{root} was not created"
    seen = [root]
    assert mode_of(root) == 0o700, f"{root} is {mode_of(root):04o}"
    for folder, dirs, names in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            seen.append(path)
            assert mode_of(path) == 0o700, f"{path} is {mode_of(path):04o}"
        for name in names:
            path = Path(folder) / name
            seen.append(path)
            assert mode_of(path) == 0o600, f"{path} is {mode_of(path):04o}"
    return seen


@pytest.fixture
def cloud() -> Iterator[tuple[FakeMendaCloud, str]]:
    secret = sentinel()
    with FakeMendaCloud() as fake:
        fake.add_client(CLIENT_ID, secret)
        yield fake, secret


def trio(home: Path, cloud: FakeMendaCloud, secret: str, **extra: str) -> dict[str, str]:
    return base_env(
        home, MENDA_CLIENT_ID=CLIENT_ID, MENDA_CLIENT_SECRET=secret, MENDA_HOST=cloud.url, **extra
    )


@pytest.mark.parametrize("umask", UMASKS, ids=lambda u: f"umask{u:03o}")
def test_in_process_cache_is_private(
    cloud: tuple[FakeMendaCloud, str], tmp_path: Path, umask: int
) -> None:
    fake, secret = cloud
    home = tmp_path / "home"
    home.mkdir()
    result = keyring_get(trio(home, fake, secret, MENDA_CREDD="off"), umask=umask)
    assert result.ok, result.describe()
    seen = assert_private_tree(home / ".menda")
    names = {p.name for p in seen}
    assert {".menda", "tokens", "cache", ".token", ".token.lock"} <= names, names


@pytest.mark.parametrize("umask", UMASKS, ids=lambda u: f"umask{u:03o}")
def test_daemon_socket_folder_socket_and_cache_are_private(
    cloud: tuple[FakeMendaCloud, str], tmp_path: Path, umask: int
) -> None:
    fake, secret = cloud
    home = tmp_path / "home"
    home.mkdir()
    with short_tmpdir() as tmp:
        # Two folders the daemon must create itself.
        sock = tmp / "a" / "run" / "credd.sock"
        log = tmp / "credd.log"
        with Daemon(base_env(tmp / "daemon-home"), sock, umask=umask, log_path=log) as daemon:
            assert stat.S_ISSOCK(os.lstat(sock).st_mode)
            assert_private_tree(tmp / "a")
            assert mode_of(sock) == 0o600
            env = trio(home, fake, secret, MENDA_CREDD_SOCKET=str(sock))
            result = keyring_get(env, umask=umask)
            assert result.ok, result.describe()
            assert daemon.counters()["exchanges_registry"] == 1, "the daemon answered"
            # The daemon wrote the machine token through to the caller's cache.
            wait_until(lambda: (home / ".menda" / "tokens" / "cache" / ".token").exists())
            assert_private_tree(home / ".menda")
            assert_private_tree(tmp / "a")


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077], ids=lambda u: f"umask{u:03o}")
def test_detached_daemon_log_and_run_folder_are_private(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with short_tmpdir() as tmp:
        sock = tmp / "s" / "credd.sock"
        env = base_env(home, MENDA_CREDD_SOCKET=str(sock))
        cli = [MENDA_CREDD]
        started = run([*cli, "start", "--socket", str(sock)], env, umask=umask)
        try:
            assert started.returncode == 0, started.describe()
            assert_private_tree(home / ".menda")
            assert (home / ".menda" / "run" / "credd.log").exists()
            assert_private_tree(tmp / "s")
            assert mode_of(sock) == 0o600
        finally:
            stopped = run([*cli, "stop", "--socket", str(sock)], env)
            assert stopped.returncode == 0, stopped.describe()
