"""The warm path's memos: what an ``env`` resolves to, and bounded LRU maps in general.

Kept apart from the server so the rules of what is remembered (identities from the
environment trio, by the exact ``env``; parsed ``mendacfg`` files, by file version;
never an error) can be read and tested on their own.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from menda_keyring.daemon_protocol import identity_env
from menda_keyring.identity import (
    DEFAULT_PROFILE,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_HOST,
    ENV_PROFILE,
    Identity,
    home_from_env,
    identity_from_profile,
    read_config,
    resolve_identity,
)
from menda_keyring.paths import config_path
from menda_keyring.retry import ceiling_from_env

#: Bound of each warm-path memo (env -> identity, service -> registry).
MEMO_SIZE = 4096
#: What :meth:`Memo.get` returns for a key it does not hold (None is a value worth keeping).
MISSING: Any = object()


class Memo:
    """A bounded least-recently-used mapping (the warm path's memos)."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        """The value, or ``MISSING``."""
        value = self._data.get(key, MISSING)
        if value is not MISSING:
            self._data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._data[key] = value
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class IdentityCache:
    """``resolve_identity`` per request, with ``mendacfg`` parsed once per file version.

    Identities from the environment trio depend on nothing but the ``env`` the client
    sent, so :meth:`request` remembers them by that mapping (bounded). Profile identities
    are resolved every time (one ``stat`` while ``mendacfg`` is unchanged), so an edit is
    noticed at once.
    """

    MAX_FILES = 64

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._parsed: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
        self._from_env = Memo(size)

    async def request(self, raw_env: Mapping[str, str]) -> tuple[Identity, Path, float]:
        """Identity, home folder and resolution ceiling for a request's ``env``.

        Raises the typed error in-process resolution would, in the same order (ceiling,
        then identity); errors are never remembered. ``mendacfg`` is read in a worker
        thread, never on the event loop (a slow or hostile file stalls only its caller).
        """
        key = frozenset(raw_env.items())
        hit = self._from_env.get(key)
        if hit is not MISSING:
            return hit  # type: ignore[no-any-return]
        env = identity_env(raw_env)
        ceiling = ceiling_from_env(env)
        home = home_from_env(env)
        identity = await self.resolve(env, home)
        if identity.source == "env":
            self._from_env.put(key, (identity, home, ceiling))
        return identity, home, ceiling

    async def resolve(self, env: Mapping[str, str], home: Path) -> Identity:
        if env.get(ENV_CLIENT_ID) and env.get(ENV_CLIENT_SECRET) and env.get(ENV_HOST):
            return resolve_identity(env, home)  # the trio: no file involved
        profile = env.get(ENV_PROFILE) or DEFAULT_PROFILE
        path = config_path(home)
        return identity_from_profile(await self.parsed(path), profile, path)

    async def parsed(self, path: Path) -> Any:
        """The parsed file: remembered while its ``stat`` is unchanged, else read off the loop."""
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            # Raises the same typed error as in process (missing, a FIFO, a device, ...).
            return await anyio.to_thread.run_sync(read_config, path)
        version = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        cached = self._parsed.get(str(path))
        if cached is not None and cached[0] == version:
            return cached[1]
        parser = await anyio.to_thread.run_sync(read_config, path)
        if len(self._parsed) >= self.MAX_FILES:
            self._parsed.clear()
        self._parsed[str(path)] = (version, parser)
        return parser
