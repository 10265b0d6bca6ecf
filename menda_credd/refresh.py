"""When to refresh a registry token and when to try again: pure functions of time and a die.

No clock and no randomness of their own, so the timing rules are testable exactly.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Generic, TypeVar

from menda_keyring.errors import MendaCloudAPIError
from menda_keyring.retry import honour_retry_after

K = TypeVar("K")

#: A token in use is refreshed at this share of its lifetime, jittered uniformly ...
REFRESH_LOW = 0.75
REFRESH_HIGH = 0.85
#: ... and a failed refresh is retried after capped, fully jittered backoff.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
BACKOFF_FLOOR = 0.2


def refresh_due(issued_at: float, expires_at: float, rand: float, first: bool = False) -> float:
    """The wall-clock time at which a token issued at ``issued_at`` should be refreshed.

    ``rand`` in [0, 1) picks a point between 75 % and 85 % of the lifetime, so that many
    entries (and many daemons) do not all refresh at once. A ``first`` token (an entry's
    first, or one obtained after the last ran out) is refreshed at :func:`first_share`
    instead: a fleet that started together (a reboot, a scale-out, 9:00) would otherwise
    refresh together ten hours later, and then every ten hours, for days.
    """
    lifetime = max(expires_at - issued_at, 0.0)
    rand = min(max(rand, 0.0), 1.0)
    share = first_share(rand) if first else REFRESH_LOW + (REFRESH_HIGH - REFRESH_LOW) * rand
    return issued_at + share * lifetime


def first_share(rand: float) -> float:
    """When to refresh a first token, as a share of its lifetime: drawn so that it is spread
    as the refreshes of a daemon that has run for weeks are.

    The time to the next refresh of an entry seen at a random moment, when refreshes come
    every U(75 %, 85 %) of a lifetime, has a flat density up to 75 % and a falling one to
    85 % (the forward recurrence time of that renewal process); ``rand`` is mapped through
    its inverse distribution. So the first wave of refreshes after a synchronised start is
    already as flat as any later one; an entry costs on average half an exchange more.
    """
    low, high = REFRESH_LOW, REFRESH_HIGH
    mean = (low + high) / 2
    position = min(max(rand, 0.0), 1.0) * mean
    if position <= low:
        return position
    width = high - low
    return high - math.sqrt(max(width * width - 2 * width * (position - low), 0.0))


def retry_delay(
    failures: int,
    rand: float,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    time_left: float | None = None,
    retry_after: float | None = None,
) -> float:
    """Seconds before the next refresh attempt after ``failures`` (>= 1) failures in a row.

    Capped exponential backoff with full jitter (uniform between nothing and the step), never
    below ``BACKOFF_FLOOR``: daemons that failed together do not come back together. When the
    current token has ``time_left`` seconds of service left, the retry comes no later than
    half of that, so a still-valid token gets several chances to be replaced before requests
    must wait. menda-cloud's ``Retry-After`` comes first (``retry.honour_retry_after``):
    never sooner than that, jittered on top, so that many told the same delay do not return
    in lock-step.
    """
    step = min(cap, base * (2 ** max(failures - 1, 0)))
    delay = step * min(max(rand, 0.0), 1.0)
    if time_left is not None and time_left > 0:
        delay = min(delay, time_left / 2)
    if retry_after is not None and retry_after > 0:
        delay = honour_retry_after(retry_after, step, rand)
    return max(delay, BACKOFF_FLOOR)


def keep_place_delay(retry_after: float | None, failures: int, rand: float) -> float | None:
    """After a failed exchange left an entry without a token: when to try again, or None to
    drop it.

    Only a rate limit that said when to come back (HTTP 429 or 503 with ``Retry-After``)
    keeps the entry: a caller that could not wait that long (its ceiling is 30 s, menda-cloud's
    backlog at a fleet-wide start is minutes) finds the token ready at its next try, and
    menda-cloud is asked once more, when it said, not once per impatient caller.
    """
    if retry_after is None:
        return None
    return retry_delay(failures, rand, retry_after=retry_after)


#: While one refresh probes a failing menda-cloud host, the others look again this often
#: (a timer, no network).
PROBE_POLL = 1.0


def host_is_failing(error: BaseException) -> bool:
    """Whether a refresh's failure says its menda-cloud host is down or unreachable, so that
    the daemon's other refreshes to it should wait (:class:`UpstreamBackoff`).

    A rate limit (HTTP 429) is not: each refusal carries its own ``Retry-After``, the
    entry's place in menda-cloud's queue, which the other entries must not lose.
    """
    return isinstance(error, MendaCloudAPIError) and error.transient and error.status_code != 429


class UpstreamBackoff(Generic[K]):
    """One backoff per menda-cloud host for the refreshes of one daemon.

    While a host fails (a transient error on a refresh), its entries do not each try on
    their own schedule: one refresh at a time probes it, after the host's own capped, fully
    jittered backoff, and the others wait for that probe. So an outage costs menda-cloud
    one try per daemon per backoff step, however many domains the daemon serves. The
    first success opens the host again. Nothing here reads a clock.
    """

    def __init__(self) -> None:
        self._until: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._probing: set[K] = set()

    def wait(self, host: K, now: float) -> float:
        """0: refresh now (when the host is failing, this refresh is its probe); else the
        seconds to wait."""
        if host not in self._failures:
            return 0.0
        if host in self._probing:
            return PROBE_POLL
        until = self._until.get(host, now)
        if now < until:
            return until - now
        self._probing.add(host)
        return 0.0

    def failed(self, host: K, now: float, rand: float, retry_after: float | None = None) -> float:
        """A refresh to ``host`` failed transiently: the time of the host's next probe."""
        failures = self._failures[host] = self._failures.get(host, 0) + 1
        self._probing.discard(host)
        until = self._until[host] = now + retry_delay(failures, rand, retry_after=retry_after)
        return until

    def succeeded(self, host: K) -> None:
        self._failures.pop(host, None)
        self._until.pop(host, None)
        self._probing.discard(host)

    def failures(self, host: K) -> int:
        return self._failures.get(host, 0)


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
