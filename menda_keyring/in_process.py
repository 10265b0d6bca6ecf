"""The synchronous driver of the resolution flow: a ``keyring get`` without a daemon.

Standard library only, loaded on the first CodeArtifact URL: urllib for menda-cloud
(:mod:`menda_keyring.http_sync`), ``time.sleep`` between tries, ``flock`` for the token
cache shared with the Menda CLI and other processes. Registry tokens are returned,
never written anywhere; the shim keeps them in this process's memory
(:data:`PROCESS_MEMORY`), so a long-lived caller makes one exchange per key.
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
from .identity import Identity, home_from_env, resolve_identity
from .paths import token_cache_path
from .private_dir import make_private_dirs
from .registry_keys import Key, login_scope, registry_key
from .retry import Deadline, RetryPolicy, ceiling_from_env
from .token_memory import TokenMemory
from .tokens import RegistryToken
from .urls import RegistryTarget

Transport = Callable[[HttpRequest, float], HttpResponse]
DEFAULT_POLICY = RetryPolicy()
#: The registry tokens this process obtained (memory only), for the shim's resolvers.
PROCESS_MEMORY = TokenMemory()


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
    """Resolves one request in the calling process. Every input is explicit for tests.

    With ``memory``, a token obtained for the same key before is served while it is
    servable, and concurrent callers for one key make one exchange.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        send: Transport = _urllib_send,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy = DEFAULT_POLICY,
        sleep: Callable[[float], None] = time.sleep,
        memory: TokenMemory | None = None,
    ) -> None:
        self.env = env
        self.home = home_from_env(env)
        self.send = send
        self.clock = clock
        self.policy = policy
        self.sleep = sleep
        self.memory = memory

    def resolve(self, target: RegistryTarget) -> RegistryToken:
        deadline = Deadline(ceiling_from_env(self.env))
        identity = resolve_identity(self.env, self.home)
        key = self.memory_key(identity, target) if self.memory is not None else None
        if self.memory is None or key is None:
            return self.exchange(identity, target, deadline)
        return self.memory.get(
            key,
            lambda: self.exchange(identity, target, deadline),
            deadline,
            still_ours=lambda: self.memory_key(identity, target) == key,
        )

    def forget(self, target: RegistryTarget) -> bool:
        """Drop the remembered token this caller would be served; whether there was one."""
        if self.memory is None:
            return False
        key = self.memory_key(resolve_identity(self.env, self.home), target)
        return key is not None and self.memory.forget(key)

    def memory_key(self, identity: Identity, target: RegistryTarget) -> Key | None:
        """The daemon's key for this caller; None for a user without a usable login (the
        flow then raises, as it must, and nothing is remembered)."""
        if identity.auth_type != "u2m":
            return registry_key(identity, target)
        login = token_cache.lookup(token_cache_path(self.home), identity, self.clock())
        return None if login is None else registry_key(identity, target, login_scope(login))

    def exchange(
        self, identity: Identity, target: RegistryTarget, deadline: Deadline
    ) -> RegistryToken:
        """The resolution flow, run to its end in this thread."""
        resolution = flow.Resolution(
            identity, target, token_cache_path(self.home), deadline, self.policy, self.clock
        )
        return drive(resolution.run(), SyncEffects(self.send, self.sleep))
