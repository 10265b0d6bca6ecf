"""Keeping the daemon's socket file where clients look for it, for as long as we serve.

macOS removes files of the per-user ``$TMPDIR`` that have not been accessed for three
days (``confstr(3)``, ``_CS_DARWIN_USER_TEMP_DIR``), and systemd-tmpfiles ages ``/tmp``
(our fallback for over-long paths) the same way. Touching the socket and its folder
every hour keeps both young. A socket that is gone all the same, or replaced by another
file, leaves no client able to reach us: the daemon says so and stops with status 1,
so that a service manager (launchd's ``KeepAlive``, systemd's ``Restart=on-failure``)
starts one that listens again.
"""

from __future__ import annotations

import contextlib
import os

import anyio

from . import runtime

TOUCH_INTERVAL = 3600.0


def still_ours(path: str, ident: tuple[int, int]) -> bool:
    """True, after touching it and its folder, while ``path`` is the socket we bound."""
    if runtime.socket_identity(path) != ident:
        return False
    with contextlib.suppress(OSError):
        os.utime(path, follow_symlinks=False)
        os.utime(os.path.dirname(path) or ".")
    return True


async def keep(path: str, ident: tuple[int, int], interval: float = TOUCH_INTERVAL) -> None:
    """Touch the socket every ``interval`` seconds; return once it is no longer ours."""
    while True:
        await anyio.sleep(interval)
        if not still_ours(path, ident):
            return
