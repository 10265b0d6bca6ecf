"""How a registry token is keyed in memory: the same key in the daemon and in one process.

A CodeArtifact token belongs to the Menda identity that obtained it and serves every
repository of one domain, so it is kept per (identity, domain). For a signed-in user
(u2m) the key also names the login: after ``menda auth logout`` and a login as someone
else, the tokens of the first login must never answer for the second.
"""

from __future__ import annotations

from .identity import Identity
from .login_entry import digest
from .tokens import AccessToken
from .urls import RegistryTarget

#: (identity fingerprint + login scope, CodeArtifact domain).
Key = tuple[str, RegistryTarget]


def login_scope(login: AccessToken) -> str:
    """The part of a user's key that names the login it came from (never the token itself)."""
    return scope_of_digest(digest(login.token))


def scope_of_digest(token_digest: str) -> str:
    """The scope of a login first seen with the token of ``token_digest`` (the daemon keeps
    that scope through the login's refreshes)."""
    return ":" + token_digest


def owner_key(identity: Identity, scope: str = "") -> str:
    """The first half of a key: whose tokens these are (``scope`` from :func:`login_scope`)."""
    return identity.fingerprint + scope


def registry_key(identity: Identity, target: RegistryTarget, scope: str = "") -> Key:
    """The key of ``identity``'s token for ``target``'s domain."""
    return (owner_key(identity, scope), target)
