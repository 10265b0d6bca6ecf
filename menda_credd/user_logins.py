"""Signed-in users (u2m) in the daemon: which login a request belongs to.

In process, every call reads the user's token from the shared cache, so a
``menda auth logout`` or a login as someone else takes effect at once. The daemon does
the same: on every request it checks the cache (one ``stat`` while the file is
unchanged), keys registry tokens by the login they came from, and forgets the tokens
of a login that was replaced. When there is no usable login it runs the flow's login
step, which raises exactly what in-process resolution raises.

A login keeps its scope through its refreshes: the scope is named after the first
access token the daemon saw of it, and a later entry belongs to the same login when its
access token is one this daemon's own refresh produced from it, or its refresh token is
the same (a refresh that did not rotate it). Anything else (``menda auth login``, as
anyone) is a new login, and so is a refresh made by another process with rotation: the
safe side, at the cost of one registry exchange. An entry whose access token has run
out but that can be refreshed keeps its scope without any call, so registry tokens
already obtained are served until their own expiry; the refresh is made when an
exchange needs an access token.

What is remembered of the cache holds digests, never a token (:func:`without_secrets`).
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from menda_keyring import token_cache
from menda_keyring.identity import Identity
from menda_keyring.login_entry import digest, read_login, without_secrets
from menda_keyring.paths import token_cache_path
from menda_keyring.registry_keys import owner_key, scope_of_digest
from menda_keyring.resolution import UpdateUserLogin
from menda_keyring.retry import Deadline
from menda_keyring.tokens import AccessToken

FileVersion = tuple[int, int, int, int]
RunLogin = Callable[[Identity, Path, Deadline], Awaitable[AccessToken]]
#: One login of one identity in one cache file.
LoginKey = tuple[Path, str]


class Lineage:
    """One login as the daemon followed it: its scope, and the digests of its recent tokens."""

    __slots__ = ("marks", "scope")
    #: Recent access and refresh token digests of this login (a refresh adds two).
    MARKS = 8

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self.marks: deque[str] = deque(maxlen=self.MARKS)

    def add(self, marks: tuple[str, ...]) -> None:
        for mark in marks:
            if mark not in self.marks:
                self.marks.append(mark)


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
        #: Per cache file: its version and its user entries without secrets.
        self._files: OrderedDict[Path, tuple[FileVersion, dict[str, object]]] = OrderedDict()
        self._logins: OrderedDict[LoginKey, Lineage] = OrderedDict()

    async def scope(self, identity: Identity, home: Path, deadline: Deadline) -> str:
        """The key suffix of ``identity``'s current login; raises when there is none."""
        cache = token_cache_path(home)
        marks = await self._marks(identity, cache)
        if marks is None:
            marks = (digest((await self._run_login(identity, cache, deadline)).token),)
        key = (cache, identity.fingerprint)
        lineage = self._logins.pop(key, None)
        if lineage is None or not any(mark in lineage.marks for mark in marks):
            if lineage is not None:
                self._on_replaced(owner_key(identity, lineage.scope))
            lineage = Lineage(scope_of_digest(marks[0]))
        lineage.add(marks)
        self._logins[key] = lineage
        if len(self._logins) > self.MAX_IDENTITIES:
            self._logins.popitem(last=False)
        return lineage.scope

    def refreshed(self, update: UpdateUserLogin) -> None:
        """This daemon refreshed a login: its new tokens continue the login they came from."""
        lineage = self._logins.get((update.path, update.identity.fingerprint))
        previous = update.previous
        if lineage is None or previous is None or digest(previous) not in lineage.marks:
            return
        rotated = update.refreshed.refresh_token
        lineage.add((digest(update.refreshed.access.token),))
        if rotated is not None:
            lineage.add((digest(rotated),))

    async def _marks(self, identity: Identity, cache: Path) -> tuple[str, ...] | None:
        """Digests naming the cached login, when it is usable as it stands or can be
        refreshed when an exchange needs it; None: the flow must decide (and say why)."""
        entry = (await self._entries(cache)).get(identity.cache_key)
        login = read_login(entry, identity)
        if login is None or login.access is None:
            return None
        if login.grant is not None:
            return (login.access.token, login.grant.refresh_token)
        return (login.access.token,) if login.access.usable(self._clock()) else None

    async def _entries(self, cache: Path) -> dict[str, object]:
        try:
            st = os.stat(cache)
            version: FileVersion | None = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        except OSError:
            version = None
        memo = self._files.get(cache)
        if version is not None and memo is not None and memo[0] == version:
            return memo[1]
        snapshot = await anyio.to_thread.run_sync(token_cache.read_snapshot, cache)
        entries = {
            key: without_secrets(entry)
            for key, entry in snapshot.tokens.items()
            if key.startswith("u2m:")
        }
        del snapshot  # it holds every login's tokens
        if version is not None:
            self._files[cache] = (version, entries)
            self._files.move_to_end(cache)
            if len(self._files) > self.MAX_FILES:
                self._files.popitem(last=False)
        return entries
