"""Tokens that know their own expiry, as google-auth credentials do.

The margins here are the only place that decides "too close to expiry to use".
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A cached Menda access token with less than this left counts as expired (contract).
ACCESS_TOKEN_MARGIN = 60.0
#: A registry token is never handed out with less than this left ...
REGISTRY_TOKEN_MIN_REMAINING = 60.0
#: ... or with less than this share of its lifetime left, whichever is smaller.
REGISTRY_TOKEN_MIN_FRACTION = 0.10


@dataclass(frozen=True)
class AccessToken:
    """A Menda access token (machine or user) for one menda-cloud host."""

    token: str = field(repr=False)
    expires_at: float
    host: str
    auth_type: str

    def remaining(self, now: float) -> float:
        return self.expires_at - now

    def usable(self, now: float) -> bool:
        return self.remaining(now) >= ACCESS_TOKEN_MARGIN


@dataclass(frozen=True)
class RegistryToken:
    """A CodeArtifact authorization token for one (domain, owner, region)."""

    token: str = field(repr=False)
    expires_at: float
    issued_at: float
    username: str = "aws"

    @property
    def lifetime(self) -> float:
        return max(self.expires_at - self.issued_at, 0.0)

    def remaining(self, now: float) -> float:
        return self.expires_at - now

    def min_remaining(self) -> float:
        """Below this much time left the token is not served: too close to expiry to be useful."""
        return min(REGISTRY_TOKEN_MIN_REMAINING, REGISTRY_TOKEN_MIN_FRACTION * self.lifetime)

    def servable(self, now: float) -> bool:
        return self.remaining(now) > self.min_remaining()


#: The public client ``menda auth login`` signs in with, when a login names none (contract 3b).
DEFAULT_LOGIN_CLIENT_ID = "menda-cli"


@dataclass(frozen=True)
class RefreshGrant:
    """What refreshing a user's login takes: its refresh token and the client it was issued to."""

    refresh_token: str = field(repr=False)
    client_id: str = DEFAULT_LOGIN_CLIENT_ID


@dataclass(frozen=True)
class RefreshedLogin:
    """menda-cloud's answer to a refresh: a new access token, and a new refresh token when it
    rotates them (None: the old one stays valid and stays in the entry)."""

    access: AccessToken
    refresh_token: str | None = field(default=None, repr=False)
