"""Runs the real resolution flow (:mod:`menda_keyring.resolution`) on the simulated machine.

Each effect the flow yields is answered here instead of by a driver's I/O: ``Send`` by
:class:`~benchmarks.fleet.cloud.SimCloud` one round trip later, ``Sleep`` by the event
loop, the token cache by the host's in-memory entries (the contract's format, so the
flow's own parsing reads them) and its lock by a queue per host. Everything the flow
decides (which token, when to retry, when to give up) is the shipped code's decision.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from menda_keyring import resolution as flow
from menda_keyring import token_cache
from menda_keyring.cloud_protocol import HttpRequest
from menda_keyring.errors import MendaError
from menda_keyring.tokens import RegistryToken

from .cloud import SimCloud
from .loop import EventLoop

NOTHING = flow.Outcome()
GRANTED = flow.Outcome(value=True)
REFUSED = flow.Outcome(value=False)
CACHE = Path("/sim/.menda/tokens/cache/.token")

Done = Callable[[RegistryToken | None, MendaError | None], None]


class Machine:
    """What the flows of one host share: its token cache, its lock, its upstream slots.

    ``max_sends`` is the daemon's limit of calls at once to one menda-cloud host (None
    in process, where each ``keyring get`` is its own process).
    """

    def __init__(
        self,
        loop: EventLoop,
        cloud: SimCloud,
        max_sends: int | None,
        on_oauth_call: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.on_oauth_call = on_oauth_call
        self.cloud = cloud
        self.tokens: dict[str, Any] = {}
        self.snapshot = token_cache.CacheSnapshot(self.tokens, corrupt=False)
        self.lock_holder: Run | None = None
        self.lock_queue: deque[Run] = deque()
        self.max_sends = max_sends
        self.sending = 0
        self.send_queue: deque[tuple[Run, HttpRequest]] = deque()

    def wall(self) -> float:
        return self.cloud.t0 + self.loop.now

    # -- the cache lock: first come, first served; a waiter gives up at its timeout ----------

    def lock(self, run: Run, timeout: float) -> bool:
        if self.lock_holder is None:
            self.lock_holder = run
            return True
        self.lock_queue.append(run)
        self.loop.after(timeout, self._lock_timeout, run)
        return False

    def _lock_timeout(self, run: Run) -> None:
        if run in self.lock_queue:
            self.lock_queue.remove(run)
            run.step(REFUSED)

    def unlock(self, run: Run) -> None:
        if self.lock_holder is not run:
            return
        self.lock_holder = None
        while self.lock_queue:
            nxt = self.lock_queue.popleft()
            if not nxt.cancelled:
                self.lock_holder = nxt
                self.loop.after(0.0, nxt.step, GRANTED)
                return

    # -- upstream calls ----------------------------------------------------------------------

    def send(self, run: Run, request: HttpRequest) -> None:
        if self.max_sends is not None and self.sending >= self.max_sends:
            self.send_queue.append((run, request))
            return
        self.sending += 1
        if request.what == "oauth2/token":
            self.on_oauth_call()
        else:
            run.on_registry_call()
        response = self.cloud.answer(request, self.loop.now)
        self.loop.after(self.cloud.config.latency, self._answered, run, response)

    def _answered(self, run: Run, response: Any) -> None:
        self.sending -= 1
        while self.send_queue:
            queued, request = self.send_queue.popleft()
            if not queued.cancelled:
                self.send(queued, request)
                break
        run.step(flow.Outcome(value=response))


class Run:
    """One resolution flow in progress on ``machine``; ``done`` gets its token or error."""

    __slots__ = ("cancelled", "done", "gen", "machine", "on_registry_call", "resolution", "sends")

    def __init__(
        self,
        machine: Machine,
        resolution: flow.Resolution,
        done: Done,
        on_registry_call: Callable[[], None],
    ) -> None:
        self.machine = machine
        self.resolution = resolution
        self.gen = resolution.run()
        self.done = done
        self.on_registry_call = on_registry_call
        self.cancelled = False
        self.sends = 0

    def start(self) -> None:
        self.step(NOTHING)

    def cancel(self) -> None:
        """Nobody wants the answer any more (the broker's abandon): stop, let go of the lock."""
        if self.cancelled:
            return
        self.cancelled = True
        self.gen.close()
        self.machine.unlock(self)

    def step(self, outcome: flow.Outcome) -> None:
        if self.cancelled:
            return
        machine = self.machine
        while True:
            try:
                effect = flow.advance(self.gen, outcome)
            except MendaError as exc:
                self._finish(None, exc)
                return
            kind = type(effect)
            if kind is flow.Done:
                self._finish(effect.value, None)  # type: ignore[union-attr]
                return
            if kind is flow.Send:
                self.sends += 1
                machine.send(self, effect.request)  # type: ignore[union-attr]
                return
            if kind is flow.Sleep:
                machine.loop.after(effect.seconds, self.step, NOTHING)  # type: ignore[union-attr]
                return
            if kind is flow.ReadCache:
                outcome = flow.Outcome(value=machine.snapshot)
            elif kind is flow.LockCache:
                if not machine.lock(self, effect.timeout):  # type: ignore[union-attr]
                    return
                outcome = GRANTED
            elif kind is flow.UnlockCache:
                machine.unlock(self)
                outcome = NOTHING
            elif kind is flow.StoreToken:
                token = effect.token  # type: ignore[union-attr]
                identity = effect.identity  # type: ignore[union-attr]
                machine.tokens[identity.cache_key] = token_cache.entry_for(identity, token)
                outcome = NOTHING
            elif kind is flow.DropToken:
                machine.tokens.pop(effect.identity.cache_key, None)  # type: ignore[union-attr]
                outcome = NOTHING
            else:  # pragma: no cover - a new effect kind must be simulated here first
                raise TypeError(f"effect {kind.__name__} is not simulated")

    def _finish(self, token: RegistryToken | None, error: MendaError | None) -> None:
        self.cancelled = True
        self.machine.unlock(self)
        self.done(token, error)
