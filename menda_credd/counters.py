"""What ``menda-credd status`` counts: one named tally per event, shared by server and broker."""

from __future__ import annotations

COUNTERS = (
    "requests",
    "hits",
    "waits",
    "exchanges_oauth",
    "exchanges_registry",
    "login_refreshes",
    "refreshes",
    "refresh_failures",
    "prewarms",
    "prewarm_failures",
    "prewarm_forgotten",
    "failures",
    "busy",
    "flights_cancelled",
    "entries_dropped",
    "entries_evicted",
    "peer_rejections",
    "connections",
    "connections_refused",
    "connections_evicted",
    "bad_requests",
)


class Counters(dict[str, int]):
    """Every counter of :data:`COUNTERS` from zero; ``count`` adds to one."""

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(COUNTERS, 0))

    def count(self, name: str, by: int = 1) -> None:
        self[name] = self.get(name, 0) + by
