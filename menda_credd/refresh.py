"""When to refresh a registry token and when to try again: pure functions of time and a die.

No clock and no randomness of their own, so the timing rules are testable exactly.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

K = TypeVar("K")

#: A token in use is refreshed at this share of its lifetime, jittered uniformly ...
REFRESH_LOW = 0.75
REFRESH_HIGH = 0.85
#: ... and a failed refresh is retried after capped, fully jittered backoff.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
BACKOFF_FLOOR = 0.2


def refresh_due(issued_at: float, expires_at: float, rand: float) -> float:
    """The wall-clock time at which a token issued at ``issued_at`` should be refreshed.

    ``rand`` in [0, 1) picks a point between 75 % and 85 % of the lifetime, so that many
    entries (and many daemons) do not all refresh at once.
    """
    lifetime = max(expires_at - issued_at, 0.0)
    share = REFRESH_LOW + (REFRESH_HIGH - REFRESH_LOW) * min(max(rand, 0.0), 1.0)
    return issued_at + share * lifetime


def retry_delay(
    failures: int,
    rand: float,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    time_left: float | None = None,
) -> float:
    """Seconds before the next refresh attempt after ``failures`` (>= 1) failures in a row.

    Capped exponential backoff with equal jitter (half fixed, half random), never below
    ``BACKOFF_FLOOR``. When the current token has ``time_left`` seconds of service left,
    the retry comes no later than half of that, so a still-valid token gets several
    chances to be replaced before requests must wait.
    """
    ceiling = min(cap, base * (2 ** max(failures - 1, 0)))
    delay = ceiling / 2 + (ceiling / 2) * min(max(rand, 0.0), 1.0)
    if time_left is not None and time_left > 0:
        delay = min(delay, time_left / 2)
    return max(delay, BACKOFF_FLOOR)


def next_wakeup(refresh_at: float | None, last_used: float, idle_timeout: float) -> float:
    """The one timer an entry needs: its refresh time or its idle deadline, whichever is first.

    Both in the same (wall-clock) time base; ``refresh_at`` None means "no refresh pending".
    """
    idle_at = last_used + idle_timeout
    return idle_at if refresh_at is None else min(refresh_at, idle_at)


def is_idle(now: float, last_used: float, idle_timeout: float) -> bool:
    return now - last_used >= idle_timeout


class RefreshSchedule(Generic[K]):
    """When each entry next needs attention: one wake-up time per key, earliest first.

    A heap with lazy deletion: re-arming or disarming a key leaves its old heap item in
    place, skipped when it surfaces. The daemon's one timer task sleeps until
    :meth:`next_at` and then handles :meth:`pop_due`; nothing here reads a clock.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._when: dict[K, float] = {}
        self._seq = itertools.count()

    def arm(self, key: K, when: float) -> None:
        self._when[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))
        if len(self._heap) > 2 * len(self._when) + 64:
            self._compact()

    def disarm(self, key: K) -> None:
        self._when.pop(key, None)

    def next_at(self) -> float | None:
        """The earliest wake-up still armed, or None."""
        self._skip_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Every key whose wake-up time has come (each disarmed by being returned)."""
        due: list[K] = []
        while True:
            self._skip_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _when, _seq, key = heapq.heappop(self._heap)
            del self._when[key]
            due.append(key)

    def __len__(self) -> int:
        return len(self._when)

    def _skip_stale(self) -> None:
        heap = self._heap
        while heap and self._when.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if self._when.get(item[2]) == item[0]]
        heapq.heapify(self._heap)
