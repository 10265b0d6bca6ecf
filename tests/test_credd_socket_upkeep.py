"""The daemon keeps its socket file young, and stops when it is taken away (socket_upkeep)."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from menda_credd import runtime, socket_upkeep
from menda_credd.daemon import until_stopped

pytestmark = pytest.mark.unit

LONG_AGO = 1_000_000_000  # 2001: what a cleaner of files unused for days would remove


@pytest.fixture
def bound(sockdir: Path) -> Iterator[tuple[str, tuple[int, int]]]:
    path = str(sockdir / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)
        ident = runtime.socket_identity(path)
        assert ident is not None
        yield path, ident


def _age(path: str) -> None:
    os.utime(path, (LONG_AGO, LONG_AGO), follow_symlinks=False)
    os.utime(os.path.dirname(path), (LONG_AGO, LONG_AGO))


def test_our_socket_and_its_folder_are_touched(bound: tuple[str, tuple[int, int]]) -> None:
    path, ident = bound
    _age(path)
    assert socket_upkeep.still_ours(path, ident)
    for touched in (path, os.path.dirname(path)):
        st = os.lstat(touched)
        assert st.st_atime > LONG_AGO and st.st_mtime > LONG_AGO, touched


def test_a_removed_or_replaced_socket_is_not_ours_and_not_touched(
    bound: tuple[str, tuple[int, int]],
) -> None:
    path, ident = bound
    os.unlink(path)
    assert not socket_upkeep.still_ours(path, ident)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as successor:
        successor.bind(path)  # another daemon's socket at the same path
        _age(path)
        assert not socket_upkeep.still_ours(path, ident)
        assert os.lstat(path).st_mtime == LONG_AGO


async def _silence() -> AsyncIterator[signal.Signals]:
    await anyio.sleep_forever()
    yield signal.SIGTERM  # pragma: no cover - never reached


async def _sigterm() -> AsyncIterator[signal.Signals]:
    yield signal.SIGTERM


def test_a_lost_socket_stops_the_daemon_with_failure(bound: tuple[str, tuple[int, int]]) -> None:
    path, ident = bound

    async def main() -> bool:
        os.unlink(path)
        with anyio.fail_after(30):
            return await until_stopped(_silence(), path, ident, interval=0.01)

    assert anyio.run(main) is True


def test_sigterm_stops_it_cleanly_and_a_kept_socket_never_does(
    bound: tuple[str, tuple[int, int]],
) -> None:
    path, ident = bound

    async def main() -> tuple[bool, bool]:
        with anyio.fail_after(30):
            by_signal = await until_stopped(_sigterm(), path, ident, interval=0.01)
        with anyio.move_on_after(0.3) as waited:
            await until_stopped(_silence(), path, ident, interval=0.01)
        return by_signal, waited.cancelled_caught

    by_signal, still_waiting = anyio.run(main)
    assert by_signal is False
    assert still_waiting, "a socket that stays ours never stops the daemon"
    # A service manager's socket (no ident of ours) is never watched.
    os.unlink(path)

    async def managed() -> bool:
        with anyio.move_on_after(0.2) as waited:
            await until_stopped(_silence(), path, None, interval=0.01)
        return waited.cancelled_caught

    assert anyio.run(managed)
