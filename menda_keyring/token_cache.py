"""The token cache file shared with the Menda CLI (contract section 3).

Readers never lock (the file is replaced atomically, so a read sees a whole
version). Writers hold the lock, re-read, change their own entry and replace the
file, so the CLI's user tokens and other machines' entries survive. A corrupt
file is copied aside before it is rewritten: it may hold another program's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .fileutil import read_regular_file, write_private_file_atomically
from .identity import Identity
from .private_dir import NOT_WRITABLE, NotPrivateError, check_private_dir, make_private_dirs
from .tokens import AccessToken

CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheSnapshot:
    """What the file held: ``tokens`` when readable, ``corrupt`` when it exists but is not valid."""

    tokens: dict[str, Any]
    corrupt: bool


def check_cache_folder(folder: Path) -> bool:
    """Whether ``folder`` exists; raises ``ConfigError`` when it is not ours to trust.

    A token found in a folder that another user can write (or that is a symbolic link,
    or belongs to someone else) may have been planted: it is never sent anywhere.
    """
    try:
        check_private_dir(folder, forbidden=NOT_WRITABLE)
    except FileNotFoundError:
        return False
    except NotPrivateError as exc:
        raise ConfigError(
            f"Menda token cache {exc}; not trusting the tokens in it "
            f"(make it yours and chmod go-w {folder}, or remove it)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"Menda token cache folder {folder} cannot be inspected: {exc.strerror}"
        ) from None
    return True


def read_snapshot(path: Path) -> CacheSnapshot:
    """What the cache file holds, after checking its folder (``check_cache_folder``)."""
    if not check_cache_folder(path.parent):
        return CacheSnapshot({}, corrupt=False)
    try:
        raw = read_regular_file(path, "Menda token cache file")
    except FileNotFoundError:
        return CacheSnapshot({}, corrupt=False)
    except OSError:
        return CacheSnapshot({}, corrupt=True)
    if not raw.strip():
        return CacheSnapshot({}, corrupt=False)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return CacheSnapshot({}, corrupt=True)
    if not isinstance(data, dict) or not isinstance(data.get("tokens", {}), dict):
        return CacheSnapshot({}, corrupt=True)
    return CacheSnapshot(dict(data.get("tokens", {})), corrupt=False)


def entry_to_token(entry: object, identity: Identity) -> AccessToken | None:
    """The cached token for ``identity`` if well formed and for the same host and type."""
    if not isinstance(entry, dict):
        return None
    token = entry.get("access_token")
    expires_at = entry.get("expires_at")
    if (
        not isinstance(token, str)
        or not token
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, (int, float))
        or entry.get("auth_type") != identity.auth_type
        or not isinstance(entry.get("host"), str)
        or entry["host"].rstrip("/") != identity.host
    ):
        return None
    return AccessToken(token, float(expires_at), identity.host, identity.auth_type)


def lookup(path: Path, identity: Identity, now: float) -> AccessToken | None:
    """A usable cached token for ``identity``, or None."""
    token = entry_to_token(read_snapshot(path).tokens.get(identity.cache_key), identity)
    return token if token is not None and token.usable(now) else None


def lock_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def store(path: Path, identity: Identity, token: AccessToken) -> None:
    """Write ``token`` under ``identity.cache_key``; the caller holds the lock."""

    def put(tokens: dict[str, Any]) -> None:
        tokens[identity.cache_key] = entry_for(identity, token)

    rewrite(path, put)


def rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read the file, let ``change`` edit its entries in place, replace it atomically.

    The caller holds the lock. Every entry ``change`` leaves alone is written back as it
    was (the Menda CLI's, other programs'), except our long-expired machine tokens; a
    corrupt file is copied aside first.
    """
    make_private_dirs(path.parent)
    snapshot = read_snapshot(path)
    if snapshot.corrupt:
        _keep_corrupt_copy(path)
    tokens = prune_expired_machine_tokens(snapshot.tokens, time.time())
    change(tokens)
    payload = json.dumps({"version": CACHE_VERSION, "tokens": tokens}, indent=1, sort_keys=True)
    write_private_file_atomically(path, payload.encode("utf-8"))


def entry_for(identity: Identity, token: AccessToken) -> dict[str, Any]:
    """The cache entry (contract section 3) that holds ``token`` for ``identity``."""
    return {
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_at": int(token.expires_at),
        "host": identity.host,
        "auth_type": identity.auth_type,
    }


#: Machine tokens this long past their expiry are removed by the next writer.
PRUNE_AFTER = 3600.0


def prune_expired_machine_tokens(tokens: dict[str, Any], now: float) -> dict[str, Any]:
    """``tokens`` without our machine entries (``m2m:*``) that expired over an hour ago.

    Only the keys menda-keyring writes are ours to remove; user entries (``u2m:*``) and
    anything else belong to the Menda CLI or other programs and are kept as they are.
    """
    kept: dict[str, Any] = {}
    for key, entry in tokens.items():
        expires_at = entry.get("expires_at") if isinstance(entry, dict) else None
        if (
            key.startswith("m2m:")
            and isinstance(expires_at, (int, float))
            and not isinstance(expires_at, bool)
            and expires_at < now - PRUNE_AFTER
        ):
            continue
        kept[key] = entry
    return kept


def drop(path: Path, identity: Identity, rejected: str) -> None:
    """Forget a machine token menda-cloud rejected, unless another writer already replaced it."""
    snapshot = read_snapshot(path)
    entry = snapshot.tokens.get(identity.cache_key)
    if snapshot.corrupt or not isinstance(entry, dict) or entry.get("access_token") != rejected:
        return
    tokens = {k: v for k, v in snapshot.tokens.items() if k != identity.cache_key}
    payload = json.dumps({"version": CACHE_VERSION, "tokens": tokens}, indent=1, sort_keys=True)
    write_private_file_atomically(path, payload.encode("utf-8"))


def _keep_corrupt_copy(path: Path) -> None:
    backup = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{os.getpid()}")
    with contextlib.suppress(OSError):
        write_private_file_atomically(backup, path.read_bytes())
