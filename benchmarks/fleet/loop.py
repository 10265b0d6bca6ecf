"""The simulation's clock: a heap of timed callbacks, run in time order."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class EventLoop:
    """Virtual time that jumps from one event to the next; nothing here sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.events = 0

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._seq), fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def clock(self) -> float:
        return self.now

    def run(self, until: float) -> None:
        """Run every event due up to ``until``; the clock then reads ``until``."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until:
            when, _seq, fn, args = pop(heap)
            self.now = when
            self.events += 1
            fn(*args)
        self.now = max(self.now, until)
