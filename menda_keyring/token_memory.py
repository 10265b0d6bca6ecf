"""One process's memory of the registry tokens it obtained (Poetry, PDM, pip's import provider).

A long-lived process asks keyring many times in one run, often from several threads at
once (Poetry downloads in parallel). Without a daemon each answer would cost a registry
exchange; with this memory the process makes at most one per key while the token is
servable, under the margins of :meth:`RegistryToken.servable` (the daemon's too). Keys
come from :mod:`menda_keyring.registry_keys`, as in the daemon. Each key has its own
lock, so threads asking for one key wait for a single exchange while other keys go on.

Standard library only; memory only: nothing is written anywhere.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .registry_keys import Key
from .retry import Deadline
from .tokens import RegistryToken

#: At most this many keys are remembered; the least recently used go first.
MAX_KEYS = 256


class _Slot:
    __slots__ = ("lock", "token")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: RegistryToken | None = None


class TokenMemory:
    """Registry tokens by key, each obtained once while it stays servable."""

    def __init__(self, clock: Callable[[], float] = time.time, max_keys: int = MAX_KEYS) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._guard = threading.Lock()
        self._slots: OrderedDict[Key, _Slot] = OrderedDict()

    def get(
        self,
        key: Key,
        obtain: Callable[[], RegistryToken],
        deadline: Deadline,
        still_ours: Callable[[], bool] = lambda: True,
    ) -> RegistryToken:
        """The remembered token for ``key`` if servable, else ``obtain()``'s.

        Callers for the same key wait (within ``deadline``) for the one that obtains it.
        The new token is remembered only if ``still_ours()`` says the key still holds
        (a user who signed in as someone else meanwhile gets it, but it is not kept);
        an error is never remembered, so the next caller tries again.
        """
        slot = self._slot(key)
        if not slot.lock.acquire(timeout=max(deadline.remaining(), 0.0)):
            raise deadline.expired_error("waiting for another thread's registry exchange")
        try:
            token = slot.token
            if token is not None and token.servable(self.clock()):
                return token
            slot.token = None
            token = obtain()
            if still_ours():
                slot.token = token
            return token
        finally:
            slot.lock.release()

    def forget(self, key: Key) -> bool:
        """Drop ``key``'s token (a registry refused it); whether one was remembered."""
        with self._guard:
            slot = self._slots.pop(key, None)
        return slot is not None and slot.token is not None

    def __len__(self) -> int:
        return len(self._slots)

    def _slot(self, key: Key) -> _Slot:
        with self._guard:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
                while len(self._slots) > self.max_keys:
                    self._slots.popitem(last=False)
            else:
                self._slots.move_to_end(key)
            return slot
