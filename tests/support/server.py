"""The daemon's socket server in a background event loop of this process, on a real socket.

For tests that need the real ``CredServer`` with a broker they built themselves (a foreign
uid to serve, a hung upstream, a huge snapshot) without a daemon subprocess.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import start_blocking_portal

from menda_credd.server import CredServer


def serve_in_thread(server: CredServer, path: str) -> Callable[[], None]:
    """Serve ``server`` on a new Unix socket at ``path``; returns the function that stops it.

    A broker that is an async context manager (the real one: its timers) is entered for
    as long as the server runs; a stand-in without one is used as it is.
    """
    portal_cm = start_blocking_portal(backend="asyncio")
    portal = portal_cm.__enter__()
    broker: Any = server.broker

    async def main(*, task_status: TaskStatus[None]) -> None:
        async with broker if hasattr(broker, "__aenter__") else contextlib.nullcontext():
            listener = await anyio.create_unix_listener(path)
            await server.serve(listener, task_status=task_status)

    try:
        serving, _ = portal.start_task(main)
    except BaseException:
        portal_cm.__exit__(None, None, None)
        raise

    def stop() -> None:
        try:
            portal.call(server.shutdown, 1.0)
            serving.result(30)
        finally:
            portal_cm.__exit__(None, None, None)

    return stop


@contextlib.contextmanager
def serving(server: CredServer, path: str) -> Iterator[CredServer]:
    """``serve_in_thread`` as a context manager."""
    stop = serve_in_thread(server, path)
    try:
        yield server
    finally:
        stop()
