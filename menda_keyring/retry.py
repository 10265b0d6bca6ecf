"""When to try menda-cloud again: capped, fully jittered exponential backoff within a deadline.

A ``keyring get`` must never hang, so every wait is bounded by what is left of
the resolution's ceiling; ``Retry-After`` is honoured when it fits.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import ConfigError, ResolutionTimeoutError

#: Default ceiling of one whole resolution, in seconds (``MENDA_KEYRING_TIMEOUT``).
DEFAULT_CEILING = 30.0
#: No single HTTP call waits longer than this.
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base: float = 0.25
    cap: float = 4.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None,
        remaining: float,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up now.

        ``attempt`` counts the attempts made so far (1 after the first failure).
        """
        if attempt >= self.max_attempts:
            return None
        step = min(self.cap, self.base * (2 ** (attempt - 1)))
        if retry_after is not None:
            wait = honour_retry_after(retry_after, step, rand())
        else:
            wait = rand() * step
        # Keep room for the next call itself; never sleep past the ceiling.
        if wait + 0.05 >= remaining:
            return None
        return wait


def honour_retry_after(retry_after: float, step: float, rand: float) -> float:
    """Seconds to wait when menda-cloud said ``Retry-After``: never sooner, and the fully
    jittered backoff ``step`` on top, so that callers told the same delay (a constant
    ``Retry-After``, an outage's end) do not come back in the same instant, and come back
    further apart the more often they were sent away."""
    return retry_after + rand * step


def ceiling_from_env(env: Mapping[str, str]) -> float:
    """``MENDA_KEYRING_TIMEOUT`` in seconds, default 30: the most one resolution may take."""
    raw = env.get("MENDA_KEYRING_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_CEILING
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"MENDA_KEYRING_TIMEOUT={raw!r} is not a number of seconds") from None
    if not 0 < value <= 600:
        raise ConfigError("MENDA_KEYRING_TIMEOUT must be between 0 and 600 seconds")
    return value


def call_timeout(remaining: float) -> float:
    return max(min(CALL_TIMEOUT, remaining), 0.05)


class Deadline:
    """What is left of one resolution's time ceiling."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._end = clock() + seconds
        self.seconds = seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def expired_error(self, doing: str) -> ResolutionTimeoutError:
        return ResolutionTimeoutError(
            f"gave up after {self.seconds:.0f} s while {doing} "
            "(MENDA_KEYRING_TIMEOUT sets this ceiling)"
        )
