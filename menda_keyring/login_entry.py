"""A signed-in user's entry in the token cache, and refreshing it (contract section 3b).

``menda auth login`` writes ``u2m:<profile>`` with an access token and, these days, a
refresh token and the public client id it was issued to. :func:`read_login` says what
such an entry offers (no I/O); :func:`refreshed_entry` is the entry after a refresh,
every member the refresh does not replace kept as it was; :func:`store_refreshed`
writes it back (the caller holds the cache lock). :func:`without_secrets` is what the
daemon may remember of an entry: digests instead of tokens, never a refresh token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import token_cache
from .errors import shown
from .identity import Identity
from .tokens import DEFAULT_LOGIN_CLIENT_ID, AccessToken, RefreshedLogin, RefreshGrant


@dataclass(frozen=True)
class UserLogin:
    """What a user entry offers its identity.

    ``access``: its access token (usable or not) when well formed and for this host;
    ``grant``: how to refresh it, when the entry can be refreshed; ``problem``: why an
    entry that carries a refresh token cannot be refreshed as written (said only when a
    refresh is needed: a usable access token is used whatever the other members say).
    """

    access: AccessToken | None
    grant: RefreshGrant | None = None
    problem: str | None = None


def read_login(entry: object, identity: Identity) -> UserLogin | None:
    """What ``entry`` (the identity's member of the cache) offers; None: no user login."""
    if not isinstance(entry, dict) or entry.get("auth_type") != identity.auth_type:
        return None
    access = token_cache.entry_to_token(entry, identity)
    refresh_token = entry.get("refresh_token")
    if refresh_token is None:
        return UserLogin(access)
    client_id = entry.get("client_id")
    host = entry.get("host")
    problem = None
    if not isinstance(refresh_token, str) or not refresh_token:
        problem = "its refresh_token is not a non-empty string"
    elif client_id is not None and (not isinstance(client_id, str) or not client_id):
        problem = "its client_id is not a non-empty string"
    elif not isinstance(host, str):
        problem = "its host is not a string"
    elif host.rstrip("/") != identity.host:
        problem = (
            f"it was made for host {shown(host, 200)}, not the profile's host {identity.host}, "
            "and a refresh token is sent only to the host that issued it"
        )
    if problem is not None:
        return UserLogin(access, problem=problem)
    return UserLogin(access, RefreshGrant(refresh_token, client_id or DEFAULT_LOGIN_CLIENT_ID))


def refreshed_entry(entry: object, identity: Identity, refreshed: RefreshedLogin) -> dict[str, Any]:
    """The entry after a refresh: new access token, type and expiry, the new refresh token
    when one came (else the old one stays), and every other member as it was."""
    updated: dict[str, Any] = (
        dict(entry)
        if isinstance(entry, dict)
        else {"host": identity.host, "auth_type": identity.auth_type}
    )
    updated["access_token"] = refreshed.access.token
    updated["token_type"] = "Bearer"  # noqa: S105 - a token type, not a secret
    updated["expires_at"] = int(refreshed.access.expires_at)
    if refreshed.refresh_token is not None:
        updated["refresh_token"] = refreshed.refresh_token
    return updated


def store_refreshed(path: Path, identity: Identity, refreshed: RefreshedLogin) -> None:
    """Write a refreshed login back into the cache file; the caller holds the lock."""

    def update(tokens: dict[str, Any]) -> None:
        key = identity.cache_key
        tokens[key] = refreshed_entry(tokens.get(key), identity, refreshed)

    token_cache.rewrite(path, update)


# -- what the daemon remembers ------------------------------------------------------------------


def digest(token: str) -> str:
    """A short digest that tells tokens apart without being one."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:16]


#: The members :func:`read_login` looks at; the daemon keeps no others.
_MEMBERS = ("expires_at", "host", "auth_type", "client_id")


def without_secrets(entry: object) -> object:
    """``entry`` as :func:`read_login` needs it, its tokens replaced by their digests.

    ``read_login`` decides on the result exactly as on the entry itself, but nothing in it
    is a token: the daemon remembers this, and reads the file again when it must refresh.
    """
    if not isinstance(entry, dict):
        return entry
    kept = {name: entry[name] for name in _MEMBERS if name in entry}
    for name in ("access_token", "refresh_token"):
        value = entry.get(name)
        if isinstance(value, str) and value:
            kept[name] = digest(value)
        elif name in entry:
            kept[name] = value if value is None or isinstance(value, (int, float)) else 0
    return kept
