"""What the daemon holds per (identity, CodeArtifact domain), and how ``status`` shows it.

An :class:`Entry` owns at most one registry token (in memory only) and at most one
:class:`Flight`, the one resolution in progress for it that every request for the same
key waits on. Rows for ``status`` carry labels and times, never a token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from menda_keyring.errors import MendaError
from menda_keyring.identity import Identity
from menda_keyring.registry_keys import Key
from menda_keyring.resolution import Resolution
from menda_keyring.retry import RetryPolicy
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import RegistryTarget


@dataclass(eq=False)
class Flight:
    """One resolution in progress. ``background``: nobody asked for it (a refresh by the
    timer, or a pre-warm, ``prewarm``), so it makes one HTTP try per attempt until a
    request joins it."""

    resolution: Resolution
    background: bool
    prewarm: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope, repr=False)
    done: anyio.Event = field(default_factory=anyio.Event, repr=False)
    result: RegistryToken | None = field(default=None, repr=False)
    error: MendaError | None = None
    waiters: int = 0

    def join(self, policy_of_requests: RetryPolicy) -> None:
        """A request waits on this flight from now on: its tries follow the normal policy."""
        self.waiters += 1
        self.resolution.policy = policy_of_requests


@dataclass(eq=False)
class Entry:
    """One (identity, CodeArtifact domain) the daemon keeps a token for."""

    key: Key
    identity: Identity
    target: RegistryTarget
    home: Path
    last_used: float
    token: RegistryToken | None = None
    flight: Flight | None = field(default=None, repr=False)
    refresh_at: float | None = None
    last_refresh: float | None = None
    refresh_failures: int = 0
    requests: int = 0
    last_error: str | None = None
    #: When a pre-warm (not a request) brought this entry its token.
    prewarmed_at: float | None = None
    #: ``Retry-After`` of the last failure, honoured by the next background try.
    retry_after: float | None = None
    #: The server's encoded answer for ``token`` (kept with the token it encodes, so a new
    #: token never gets an old answer); dropped with the entry.
    answer: tuple[RegistryToken, bytes] | None = field(default=None, repr=False)

    def servable_token(self, now: float) -> RegistryToken | None:
        token = self.token
        return token if token is not None and token.servable(now) else None

    def state(self, now: float) -> str:
        if self.flight is not None:
            return "refreshing" if self.token is not None else "exchanging"
        return "valid" if self.servable_token(now) is not None else "expired"


def status_row(entry: Entry, now: float) -> dict[str, Any]:
    """What ``status`` shows of one entry: labels and times, never a token."""
    token = entry.token
    return {
        "identity": entry.identity.label,
        "domain": entry.target.domain,
        "domain_owner": entry.target.owner,
        "region": entry.target.region,
        "state": entry.state(now),
        "issued_at": token.issued_at if token else None,
        "expires_at": token.expires_at if token else None,
        "last_refresh": entry.last_refresh,
        "next_refresh": entry.refresh_at,
        "last_used": entry.last_used,
        "requests": entry.requests,
        "refresh_failures": entry.refresh_failures,
        "last_error": entry.last_error,
        "prewarmed_at": entry.prewarmed_at,
    }


def describe(target: RegistryTarget) -> str:
    return f"{target.domain}-{target.owner} ({target.region})"
