"""The daemon's open connections: a cap, eviction of the longest-idle one, drain on stop.

One job: who may hold a connection and for how long. Each connection runs in its own
anyio cancel scope, so closing one (eviction, shutdown) is cancelling its scope; the
handler's ``async with stream`` then closes the socket. The decisions (whom to evict,
whether to warn) are plain methods a test can call without a socket.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import anyio

#: The one cap on open connections (``menda-credd start`` and the server use it).
MAX_CONNECTIONS = 256
#: How long one request line may take to arrive, and one answer to be taken by the client.
READ_TIMEOUT = 10.0
#: At most one peer-rejection warning per this many seconds (the rest are counted in it).
WARN_INTERVAL = 60.0


class Connection:
    """One client connection: its cancel scope, whether it is mid-request, when it last acted."""

    __slots__ = ("busy", "done", "scope", "since")

    def __init__(self, now: float) -> None:
        self.scope = anyio.CancelScope()
        self.busy = False
        self.since = now
        self.done = anyio.Event()


class ConnectionManager:
    """Admits connections up to ``cap``, making room by closing the longest-idle one.

    An idle connection costs its client nothing to lose (it reconnects), whereas
    refusing a newcomer would send a ``keyring get`` to in-process resolution; only
    when every connection is mid-request is the newcomer closed.
    """

    def __init__(
        self,
        cap: int = MAX_CONNECTIONS,
        count: Callable[[str], None] = lambda name: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = cap
        self.count = count
        self.clock = clock
        self.open: set[Connection] = set()
        self.stopping = False

    def __len__(self) -> int:
        return len(self.open)

    def __bool__(self) -> bool:
        return bool(self.open)

    def admit(self) -> Connection | None:
        """A new connection, or None when the cap is reached and every connection is busy."""
        if self.stopping:
            return None
        if len(self.open) >= self.cap:
            victim = self.longest_idle()
            if victim is None:
                self.count("connections_refused")
                return None
            self.evict(victim)
        conn = Connection(self.clock())
        self.open.add(conn)
        self.count("connections")
        return conn

    def longest_idle(self) -> Connection | None:
        idle = [conn for conn in self.open if not conn.busy]
        return min(idle, key=lambda conn: conn.since) if idle else None

    def evict(self, conn: Connection) -> None:
        # connections_refused counts every connection closed because of the cap;
        # connections_evicted the part of them that were idle ones making room.
        self.open.discard(conn)
        conn.scope.cancel()
        self.count("connections_refused")
        self.count("connections_evicted")

    def begin(self, conn: Connection) -> None:
        """A request arrived on ``conn``: it is not idle until its answer is out."""
        conn.busy = True
        conn.since = self.clock()

    def end(self, conn: Connection) -> None:
        conn.busy = False
        conn.since = self.clock()

    def close(self, conn: Connection) -> None:
        """The handler of ``conn`` has finished, for whatever reason."""
        self.open.discard(conn)
        conn.done.set()

    async def drain(self, grace: float) -> None:
        """Stop: close idle connections now, give busy ones up to ``grace`` s to finish."""
        self.stopping = True
        waiting = list(self.open)
        for conn in waiting:
            if not conn.busy:
                conn.scope.cancel()
        with anyio.move_on_after(grace):
            for conn in waiting:
                await conn.done.wait()
        for conn in waiting:
            conn.scope.cancel()
        with anyio.move_on_after(1.0):
            for conn in waiting:
                await conn.done.wait()


class Throttle:
    """At most one log line per ``interval`` seconds; says how many it held back meanwhile.

    A local process that hammers the socket (another user's, say) must not fill the
    journal: each rejection is still counted in ``status``.
    """

    def __init__(self, interval: float = WARN_INTERVAL) -> None:
        self.interval = interval
        self._next = -math.inf
        self._held = 0

    def admit(self, now: float) -> int | None:
        """None: stay quiet. Otherwise log now; the number says how many were held back."""
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self.interval
        return held
