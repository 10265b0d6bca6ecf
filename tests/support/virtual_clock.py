"""An asyncio event loop whose clock is virtual: time jumps to the next timer when idle.

Time-driven daemon logic (refresh at 75-85 % of a lifetime, backoff, idle eviction) is
tested on it, so an hour passes in milliseconds. Worker threads (anyio's ``to_thread``,
where the token cache is read and locked) are waited for in real time, never skipped.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualClockLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        loop = self.loop
        if loop.pending_threads > 0 or loop.threads_busy():
            wait = 0.05 if timeout is None else min(timeout, 0.05)
            started = time.perf_counter()
            events = super().select(wait)
            loop.now += min(time.perf_counter() - started, wait)
            return events
        events = super().select(0)
        if events or timeout is None:
            return events or super().select(None)
        loop.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """Virtual time; real time while a worker thread runs (``run_in_executor`` is counted
    here, anyio's ``to_thread`` through ``threads_busy``, which its user sets)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending_threads = 0
        self.threads_busy: Callable[[], bool] = lambda: False
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        self.pending_threads += 1

        def done(_: object) -> None:
            self.pending_threads -= 1

        future.add_done_callback(done)
        return future


def run_virtual(
    main: Callable[[Callable[[], float]], Coroutine[Any, Any, T]], start: float | None = None
) -> T:
    """Run ``main(clock)`` on a virtual-clock loop; ``clock()`` is its wall-clock time,
    from ``start`` (a Unix time; default now)."""
    loop = VirtualClockLoop()
    start = time.time() if start is None else start

    async def wrapped() -> T:
        limiter = anyio.to_thread.current_default_thread_limiter()
        loop.threads_busy = lambda: limiter.borrowed_tokens > 0
        return await main(lambda: start + loop.time())

    try:
        return loop.run_until_complete(wrapped())
    finally:
        loop.close()
