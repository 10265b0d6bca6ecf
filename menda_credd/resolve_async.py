"""The asynchronous driver of the resolution flow (:mod:`menda_keyring.resolution`).

It performs the flow's effects on the daemon's event loop: HTTP through aiohttp under
two anyio ``CapacityLimiter``s (at most ``max_upstream`` calls to menda-cloud at once,
and at most ``max_per_host`` of them to one menda-cloud host, so that one slow host
cannot take every slot), waits with ``anyio.sleep``, and the token cache in worker
threads (``anyio.to_thread``) under the very flock in-process callers and the Menda CLI
take (``filelock``, which takes ``flock(2)`` on Unix). Flows of this daemon queue for a
cache on an ``anyio.Lock`` first, so that they do not fill the thread pool with
waiters; the one that fetches writes through, and the next reads what it wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import filelock

from menda_keyring import login_entry, token_cache
from menda_keyring import resolution as flow
from menda_keyring.cloud_protocol import HttpRequest, HttpResponse
from menda_keyring.private_dir import make_private_dirs

AsyncSend = Callable[[HttpRequest, float], Awaitable[HttpResponse]]

MAX_UPSTREAM = 4
NOTHING = flow.Outcome()
MAX_PER_HOST = 2


class _HeldLock:
    """One flow's hold on a cache lock: this daemon's queue, then the file's flock."""

    def __init__(
        self, queue: anyio.Lock, file_lock: filelock.BaseFileLock, forget: Callable[[], None]
    ) -> None:
        self.queue = queue
        self.file_lock = file_lock
        self.forget = forget

    async def release(self) -> None:
        try:
            await anyio.to_thread.run_sync(self.file_lock.release)
        finally:
            self.queue.release()
            self.forget()


class AsyncEffects:
    """What the daemon's flows share: the upstream limits and the per-cache queues."""

    def __init__(
        self,
        send: AsyncSend,
        max_upstream: int = MAX_UPSTREAM,
        max_per_host: int = MAX_PER_HOST,
        on_send: Callable[[HttpRequest], None] | None = None,
        on_refreshed: Callable[[flow.UpdateUserLogin], None] | None = None,
    ) -> None:
        self._send = send
        self.upstream = anyio.CapacityLimiter(max_upstream)
        self.max_per_host = max_per_host
        self._hosts: dict[str, anyio.CapacityLimiter] = {}
        self._queues: dict[Path, anyio.Lock] = {}
        self._on_send = on_send
        self._on_refreshed = on_refreshed

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """One call to menda-cloud, inside both limits (the host's first, then the total)."""
        host = urlsplit(request.url).netloc
        limiter = self._hosts.get(host)
        if limiter is None:
            limiter = self._hosts[host] = anyio.CapacityLimiter(self.max_per_host)
        try:
            async with limiter, self.upstream:
                if self._on_send is not None:
                    self._on_send(request)
                return await self._send(request, timeout)
        finally:
            stats = limiter.statistics()
            if not stats.borrowed_tokens and not stats.tasks_waiting:
                self._hosts.pop(host, None)

    async def lock(self, path: Path, timeout: float) -> _HeldLock | None:
        queue = self._queues.get(path)
        if queue is None:
            queue = self._queues[path] = anyio.Lock()

        def forget() -> None:  # keeps one queue per cache in use, not per cache ever seen
            stats = queue.statistics()
            if not stats.locked and not stats.tasks_waiting and self._queues.get(path) is queue:
                del self._queues[path]

        with anyio.move_on_after(timeout) as waited:
            await queue.acquire()
        if waited.cancelled_caught:
            forget()
            return None
        try:
            await anyio.to_thread.run_sync(make_private_dirs, path.parent)
            file_lock = filelock.FileLock(
                path, mode=0o600, thread_local=False, fallback_to_soft=False
            )
            acquire = functools.partial(file_lock.acquire, timeout=max(timeout, 0.0))
            await anyio.to_thread.run_sync(acquire)
        except filelock.Timeout:
            queue.release()
            forget()
            return None
        except BaseException:
            queue.release()
            forget()
            raise
        return _HeldLock(queue, file_lock, forget)

    async def perform(self, effect: flow.Effect, held: dict[Path, _HeldLock]) -> Any:
        if isinstance(effect, flow.Send):
            return await self.send(effect.request, effect.timeout)
        if isinstance(effect, flow.Sleep):
            return await anyio.sleep(effect.seconds)
        if isinstance(effect, flow.ReadCache):
            return await anyio.to_thread.run_sync(token_cache.read_snapshot, effect.path)
        if isinstance(effect, flow.LockCache):
            lock = await self.lock(effect.path, effect.timeout)
            if lock is None:
                return False
            held[effect.path] = lock
            return True
        if isinstance(effect, flow.UnlockCache):
            return await held.pop(effect.path).release()
        if isinstance(effect, flow.StoreToken):
            store = functools.partial(token_cache.store, effect.path, effect.identity, effect.token)
            return await anyio.to_thread.run_sync(store)
        if isinstance(effect, flow.UpdateUserLogin):
            # Said before the file changes, so that nobody reading it in between takes the
            # refreshed login for a new one.
            if self._on_refreshed is not None:
                self._on_refreshed(effect)
            update = functools.partial(
                login_entry.store_refreshed, effect.path, effect.identity, effect.refreshed
            )
            return await anyio.to_thread.run_sync(update)
        if isinstance(effect, flow.DropToken):
            drop = functools.partial(
                token_cache.drop, effect.path, effect.identity, effect.rejected
            )
            return await anyio.to_thread.run_sync(drop)
        raise TypeError(f"unknown effect {type(effect).__name__}")

    async def outcome_of(self, effect: flow.Effect, held: dict[Path, _HeldLock]) -> flow.Outcome:
        try:
            return flow.Outcome(value=await self.perform(effect, held))
        except flow.EFFECT_ERRORS as exc:
            return flow.Outcome(error=exc)


async def drive(steps: flow.Flow[flow.T], effects: AsyncEffects) -> flow.T:
    """Run the flow ``steps`` to its end on this event loop; cancellation releases its locks."""
    held: dict[Path, _HeldLock] = {}
    outcome = NOTHING
    try:
        while not isinstance(step := flow.advance(steps, outcome), flow.Done):
            # Let go of the last result (a parsed token cache, say) before waiting again:
            # a flow queued on the cache lock would otherwise hold it all that time.
            outcome = NOTHING
            outcome = await effects.outcome_of(step, held)
        return step.value
    finally:
        steps.close()
        with anyio.CancelScope(shield=True):
            while held:
                await held.popitem()[1].release()
