"""Signed-in users (u2m) in the daemon: which login a request belongs to.

In process, every call reads the user's token from the shared cache, so a
``menda auth logout`` or a login as someone else takes effect at once. The daemon does
the same: on every request it checks the cache (one ``stat`` while the file is
unchanged), keys registry tokens by the login they came from, and forgets the tokens
of a login that was replaced. When there is no usable login it runs the flow's login
step, which raises exactly what in-process resolution raises.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from menda_keyring import token_cache
from menda_keyring.identity import Identity
from menda_keyring.paths import token_cache_path
from menda_keyring.registry_keys import login_scope, owner_key
from menda_keyring.retry import Deadline
from menda_keyring.tokens import AccessToken

FileVersion = tuple[int, int, int, int]
RunLogin = Callable[[Identity, Path, Deadline], Awaitable[AccessToken]]


class UserLogins:
    """Scopes of user logins, with bounded memory of cache files and identities."""

    MAX_FILES = 64
    MAX_IDENTITIES = 4096

    def __init__(
        self,
        run_login: RunLogin,
        on_replaced: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        self._run_login = run_login
        self._on_replaced = on_replaced
        self._clock = clock
        self._files: OrderedDict[Path, tuple[FileVersion, token_cache.CacheSnapshot]] = (
            OrderedDict()
        )
        self._scopes: OrderedDict[str, str] = OrderedDict()

    async def scope(self, identity: Identity, home: Path, deadline: Deadline) -> str:
        """The key suffix of ``identity``'s current login; raises when there is none."""
        cache = token_cache_path(home)
        token = await self._cached(identity, cache)
        if token is None:
            token = await self._run_login(identity, cache, deadline)
        scope = login_scope(token)
        previous = self._scopes.pop(identity.fingerprint, None)
        self._scopes[identity.fingerprint] = scope
        if len(self._scopes) > self.MAX_IDENTITIES:
            self._scopes.popitem(last=False)
        if previous is not None and previous != scope:
            self._on_replaced(owner_key(identity, previous))
        return scope

    async def _cached(self, identity: Identity, cache: Path) -> AccessToken | None:
        try:
            st = os.stat(cache)
            version: FileVersion | None = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        except OSError:
            version = None
        memo = self._files.get(cache)
        if version is not None and memo is not None and memo[0] == version:
            snapshot = memo[1]
        else:
            snapshot = await anyio.to_thread.run_sync(token_cache.read_snapshot, cache)
            if version is not None:
                self._files[cache] = (version, snapshot)
                self._files.move_to_end(cache)
                if len(self._files) > self.MAX_FILES:
                    self._files.popitem(last=False)
        token = token_cache.entry_to_token(snapshot.tokens.get(identity.cache_key), identity)
        return token if token is not None and token.usable(self._clock()) else None
