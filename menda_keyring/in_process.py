"""The synchronous driver of the resolution flow: a ``keyring get`` without a daemon.

Standard library only, loaded on the first CodeArtifact URL: urllib for menda-cloud
(:mod:`menda_keyring.http_sync`), ``time.sleep`` between tries, ``flock`` for the token
cache shared with the Menda CLI and other processes. Registry tokens are returned,
never written anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import login_entry, token_cache
from . import resolution as flow
from .cloud_protocol import HttpRequest, HttpResponse
from .fileutil import ExclusiveLock
from .identity import home_from_env, resolve_identity
from .paths import token_cache_path
from .private_dir import make_private_dirs
from .retry import Deadline, RetryPolicy, ceiling_from_env
from .tokens import RegistryToken
from .urls import RegistryTarget

Transport = Callable[[HttpRequest, float], HttpResponse]
DEFAULT_POLICY = RetryPolicy()


def _urllib_send(request: HttpRequest, timeout: float) -> HttpResponse:
    from .http_sync import send

    return send(request, timeout)


class SyncEffects:
    """Performs a flow's effects in this thread; releases what the flow left locked."""

    def __init__(
        self, send: Transport = _urllib_send, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.send = send
        self.sleep = sleep
        self.held: dict[Path, ExclusiveLock] = {}

    def perform(self, effect: flow.Effect) -> Any:
        if isinstance(effect, flow.Send):
            return self.send(effect.request, effect.timeout)
        if isinstance(effect, flow.Sleep):
            return self.sleep(effect.seconds)
        if isinstance(effect, flow.ReadCache):
            return token_cache.read_snapshot(effect.path)
        if isinstance(effect, flow.LockCache):
            make_private_dirs(effect.path.parent)
            lock = ExclusiveLock(effect.path)
            if not lock.acquire(effect.timeout):
                return False
            self.held[effect.path] = lock
            return True
        if isinstance(effect, flow.UnlockCache):
            self.held.pop(effect.path).release()
            return None
        if isinstance(effect, flow.StoreToken):
            return token_cache.store(effect.path, effect.identity, effect.token)
        if isinstance(effect, flow.UpdateUserLogin):
            return login_entry.store_refreshed(effect.path, effect.identity, effect.refreshed)
        if isinstance(effect, flow.DropToken):
            return token_cache.drop(effect.path, effect.identity, effect.rejected)
        raise TypeError(f"unknown effect {type(effect).__name__}")

    def outcome_of(self, effect: flow.Effect) -> flow.Outcome:
        try:
            return flow.Outcome(value=self.perform(effect))
        except flow.EFFECT_ERRORS as exc:
            return flow.Outcome(error=exc)

    def release_all(self) -> None:
        while self.held:
            _path, lock = self.held.popitem()
            lock.release()


def drive(steps: flow.Flow[flow.T], effects: SyncEffects) -> flow.T:
    """Run the flow ``steps`` to its end in this thread."""
    outcome = flow.Outcome()
    try:
        while not isinstance(step := flow.advance(steps, outcome), flow.Done):
            outcome = effects.outcome_of(step)
        return step.value
    finally:
        steps.close()
        effects.release_all()


class InProcessResolver:
    """Resolves one request in the calling process. Every input is explicit for tests."""

    def __init__(
        self,
        env: Mapping[str, str],
        send: Transport = _urllib_send,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.env = env
        self.home = home_from_env(env)
        self.send = send
        self.clock = clock
        self.policy = policy
        self.sleep = sleep

    def resolve(self, target: RegistryTarget) -> RegistryToken:
        deadline = Deadline(ceiling_from_env(self.env))
        identity = resolve_identity(self.env, self.home)
        resolution = flow.Resolution(
            identity, target, token_cache_path(self.home), deadline, self.policy, self.clock
        )
        return drive(resolution.run(), SyncEffects(self.send, self.sleep))
