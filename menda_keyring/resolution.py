"""The resolution flow, written once and without I/O, in the manner of h11.

A :class:`Resolution` turns an identity and a CodeArtifact domain into a registry
token. It never touches the network, the disk or the clock's sleep itself: it is a
generator that yields *effects* (send this request with this timeout, wait this
long, read the token cache, take its lock, write an entry) and receives their
results. Two drivers run it: :mod:`menda_keyring.in_process` (urllib, ``time.sleep``,
``flock``) for a ``keyring get`` without a daemon, and :mod:`menda_credd.resolve_async`
(aiohttp, anyio) in the daemon. So both answer alike by construction.

A driver sends each effect's result back into the flow, or throws the exception that
performing it raised (a :class:`~menda_keyring.errors.MendaError` from the HTTP layer,
an ``OSError`` from the disk); :func:`advance` does that step for both drivers. Locks a
flow still holds when it ends (an error, a cancellation) are the driver's to release.

The retry policy is an attribute, read at every decision: the daemon runs a background
refresh with a one-try policy and sets the normal one when a request joins it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Generic, TypeVar

from . import token_cache
from .cloud_protocol import (
    HttpRequest,
    HttpResponse,
    oauth_request,
    parse_oauth_response,
    parse_refresh_response,
    parse_registry_response,
    refresh_request,
    registry_request,
)
from .errors import (
    AccessTokenRejected,
    ConfigError,
    InvalidLoginEntryError,
    MendaCloudAPIError,
    MendaError,
    NoCachedLoginError,
    TransientError,
    redact,
    shown,
)
from .identity import Identity
from .login_entry import UserLogin, read_login
from .records import Record
from .retry import Deadline, RetryPolicy, call_timeout
from .tokens import AccessToken, RefreshedLogin, RefreshGrant, RegistryToken
from .urls import RegistryTarget

T = TypeVar("T")

# -- effects: what a flow asks its driver to do -------------------------------------------


class Send(Record):
    """Send ``request``; the result is an :class:`HttpResponse`, or a raised MendaError."""

    __slots__ = ("request", "timeout")
    request: HttpRequest
    timeout: float

    def __init__(self, request: HttpRequest, timeout: float) -> None:
        self._set(request=request, timeout=timeout)


class Sleep(Record):
    """Wait ``seconds`` before the next try."""

    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        self._set(seconds=seconds)


class ReadCache(Record):
    """Read the token cache file; the result is a :class:`token_cache.CacheSnapshot`."""

    __slots__ = ("path",)
    path: Path

    def __init__(self, path: Path) -> None:
        self._set(path=path)


class LockCache(Record):
    """Take the cache's exclusive lock (creating its private folder); result: True, or False
    when it was not free within ``timeout`` seconds. OSError: the folder is unusable."""

    __slots__ = ("path", "timeout")
    path: Path
    timeout: float

    def __init__(self, path: Path, timeout: float) -> None:
        self._set(path=path, timeout=timeout)


class UnlockCache(Record):
    __slots__ = ("path",)
    path: Path

    def __init__(self, path: Path) -> None:
        self._set(path=path)


class StoreToken(Record):
    """Write ``token`` under ``identity``'s key (the lock is held). OSError: not written."""

    __slots__ = ("identity", "path", "token")
    _hidden = ("token",)
    path: Path
    identity: Identity
    token: AccessToken

    def __init__(self, path: Path, identity: Identity, token: AccessToken) -> None:
        self._set(path=path, identity=identity, token=token)


class UpdateUserLogin(Record):
    """Write a refreshed login back into ``identity``'s entry (the lock is held), keeping
    its other members. ``previous`` is the access token it replaces (the daemon follows a
    login through its refreshes by it). OSError: not written."""

    __slots__ = ("identity", "path", "previous", "refreshed")
    _hidden = ("previous", "refreshed")
    path: Path
    identity: Identity
    refreshed: RefreshedLogin
    previous: str | None

    def __init__(
        self, path: Path, identity: Identity, refreshed: RefreshedLogin, previous: str | None
    ) -> None:
        self._set(path=path, identity=identity, refreshed=refreshed, previous=previous)


class DropToken(Record):
    """Forget the entry of ``identity`` if it still holds ``rejected`` (the lock is held)."""

    __slots__ = ("identity", "path", "rejected")
    _hidden = ("rejected",)
    path: Path
    identity: Identity
    rejected: str

    def __init__(self, path: Path, identity: Identity, rejected: str) -> None:
        self._set(path=path, identity=identity, rejected=rejected)


Effect = (
    Send | Sleep | ReadCache | LockCache | UnlockCache | StoreToken | UpdateUserLogin | DropToken
)
Flow = Generator[Effect, Any, T]


# -- stepping a flow: shared by both drivers --------------------------------------------------


class Outcome(Record):
    """What performing an effect gave: a value, or the exception it raised."""

    __slots__ = ("error", "value")
    _hidden = ("value",)
    value: Any
    error: BaseException | None

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self._set(value=value, error=error)


class Done(Record, Generic[T]):
    __slots__ = ("value",)
    _hidden = ("value",)
    value: T

    def __init__(self, value: T) -> None:
        self._set(value=value)


#: Exceptions a driver throws back into the flow: the flow decides what they mean.
EFFECT_ERRORS = (MendaError, OSError)


def advance(flow: Flow[T], outcome: Outcome) -> Effect | Done[T]:
    """Give the flow the outcome of its last effect; its next effect, or Done."""
    try:
        if outcome.error is not None:
            return flow.throw(outcome.error)
        return flow.send(outcome.value)
    except StopIteration as stop:
        return Done(stop.value)


# -- the flow ------------------------------------------------------------------------------------


class Resolution:
    """One resolution of a registry token for ``identity`` and ``target``.

    ``run()`` is the whole flow: a Menda access token (from the shared cache; for a
    machine identity one OAuth exchange under the cache lock, so that a herd of processes
    makes one; for a signed-in user whose token has run out, one refresh of the login,
    under the lock too), then the registry exchange; an access token menda-cloud rejects
    is replaced once (a machine's by OAuth, a user's by a refresh) and the exchange
    retried once. Transient failures are retried with
    jittered backoff inside the deadline. Every error that leaves it is redacted.
    """

    def __init__(
        self,
        identity: Identity,
        target: RegistryTarget | None,
        cache: Path,
        deadline: Deadline,
        policy: RetryPolicy,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.identity = identity
        self.target = target
        self.cache = cache
        self.deadline = deadline
        #: Read at every retry decision, so a driver may change it while the flow runs.
        self.policy = policy
        self.clock = clock
        self.rand = rand

    def run(self) -> Flow[RegistryToken]:
        """The registry token, or a typed (and redacted) error."""
        assert self.target is not None
        try:
            access = yield from self.access_token()
            try:
                return (yield from self.exchange(access))
            except AccessTokenRejected:
                access = yield from self.access_token(rejected=access.token)
                try:
                    return (yield from self.exchange(access))
                except AccessTokenRejected as again:
                    raise MendaCloudAPIError(
                        f"{again.message}, also with a freshly issued token", 401
                    ) from None
        except MendaError as exc:
            raise redact(exc, self.secrets()) from None

    def login(self) -> Flow[AccessToken]:
        """Only the Menda access token (the daemon's check of a user's login)."""
        try:
            return (yield from self.access_token())
        except MendaError as exc:
            raise redact(exc, self.secrets()) from None

    def secrets(self) -> tuple[str, ...]:
        return (self.identity.client_secret or "",)

    # -- the Menda access token ----------------------------------------------------------------

    def access_token(self, rejected: str | None = None) -> Flow[AccessToken]:
        """A usable Menda access token; ``rejected`` is one menda-cloud just refused."""
        if self.identity.auth_type == "u2m":
            return (yield from self.user_access_token(rejected))
        if rejected is None:
            cached = yield from self.cached_access_token()
            if cached is not None:
                return cached
        yield from self.lock()
        # Whoever held the lock before us may have just fetched one.
        cached = yield from self.cached_access_token()
        if cached is not None and cached.token != rejected:
            yield UnlockCache(self.lock_path)
            return cached
        if rejected is not None:
            with contextlib.suppress(OSError):  # the fresh token replaces it anyway
                yield DropToken(self.cache, self.identity, rejected)
        token = yield from self.call(
            oauth_request(self.identity),
            lambda r: parse_oauth_response(r, self.identity, self.clock()),
        )
        # An unwritable cache costs an exchange next time, not this answer.
        with contextlib.suppress(OSError):
            yield StoreToken(self.cache, self.identity, token)
        yield UnlockCache(self.lock_path)
        return token

    def user_access_token(self, rejected: str | None) -> Flow[AccessToken]:
        """The signed-in user's access token, the login refreshed when it must be (3b).

        A used refresh token dies, so the refresh is made only under the cache lock and
        after reading the file again: whoever refreshed meanwhile has left a fresh access
        token there, which is ours too, and no second refresh is made.
        """
        login = yield from self.cached_login()
        fresh = self.fresh_access(login, rejected)
        if fresh is not None:
            return fresh
        self.refresh_grant(login, rejected)  # nothing to refresh: fail before locking
        yield from self.lock()
        login = yield from self.cached_login()
        fresh = self.fresh_access(login, rejected)
        if fresh is not None:
            yield UnlockCache(self.lock_path)
            return fresh
        refreshed = yield from self.refresh(self.refresh_grant(login, rejected))
        previous = login.access.token if login is not None and login.access is not None else None
        del login  # holds the old refresh token, dead from now on
        # An unwritable cache costs a sign-in next time (a rotated refresh token is lost
        # with it), not this answer.
        with contextlib.suppress(OSError):
            yield UpdateUserLogin(self.cache, self.identity, refreshed, previous)
        yield UnlockCache(self.lock_path)
        return refreshed.access

    def cached_login(self) -> Flow[UserLogin | None]:
        snapshot: token_cache.CacheSnapshot = yield ReadCache(self.cache)
        return read_login(snapshot.tokens.get(self.identity.cache_key), self.identity)

    def fresh_access(self, login: UserLogin | None, rejected: str | None) -> AccessToken | None:
        """The login's access token when it is usable and not the one just rejected."""
        access = login.access if login is not None else None
        if access is None or access.token == rejected or not access.usable(self.clock()):
            return None
        return access

    def refresh_grant(self, login: UserLogin | None, rejected: str | None) -> RefreshGrant:
        """How to refresh ``login``, or the error that says the user must sign in again."""
        if login is not None and login.problem is not None:
            raise invalid_login_error(self.identity, self.cache, login.problem)
        if login is None or login.grant is None:
            if rejected is not None:
                raise login_rejected_error(self.identity)
            raise no_login_error(self.identity, self.cache)
        return login.grant

    def refresh(self, grant: RefreshGrant) -> Flow[RefreshedLogin]:
        """One refresh (with retries of transient failures); a refusal ends the login."""
        try:
            return (
                yield from self.call(
                    refresh_request(self.identity.host, grant),
                    lambda r: parse_refresh_response(r, self.identity, self.clock()),
                )
            )
        except NoCachedLoginError as refused:
            raise no_login_error(self.identity, self.cache, refused.message) from None

    def cached_access_token(self) -> Flow[AccessToken | None]:
        snapshot: token_cache.CacheSnapshot = yield ReadCache(self.cache)
        token = token_cache.entry_to_token(
            snapshot.tokens.get(self.identity.cache_key), self.identity
        )
        return token if token is not None and token.usable(self.clock()) else None

    @property
    def lock_path(self) -> Path:
        return token_cache.lock_path_for(self.cache)

    def lock(self) -> Flow[None]:
        try:
            acquired = yield LockCache(self.lock_path, max(self.deadline.remaining(), 0.0))
        except OSError as exc:
            raise ConfigError(
                f"The Menda token cache folder {self.cache.parent} cannot be used: "
                f"{exc.strerror or type(exc).__name__}. Check that your home folder is writable."
            ) from None
        if not acquired:
            raise self.deadline.expired_error(f"waiting for the token cache lock {self.lock_path}")

    # -- the registry exchange ----------------------------------------------------------------

    def exchange(self, access: AccessToken) -> Flow[RegistryToken]:
        target = self.target
        assert target is not None
        return (
            yield from self.call(
                registry_request(self.identity.host, access.token, target),
                lambda r: parse_registry_response(r, self.identity, target, self.clock()),
            )
        )

    # -- one call with retries ----------------------------------------------------------------

    def call(self, request: HttpRequest, parse: Callable[[HttpResponse], T]) -> Flow[T]:
        """Send and parse, retrying transient failures with jittered backoff in the deadline."""
        attempt = 0
        while True:
            remaining = self.deadline.remaining()
            if remaining <= 0:
                raise self.deadline.expired_error(f"calling menda-cloud {request.what}")
            attempt += 1
            try:
                response = yield Send(request, call_timeout(remaining))
                return parse(response)
            except MendaError as exc:
                redact(exc, request.secrets)
                if not isinstance(exc, TransientError):
                    raise
                wait = self.policy.delay(
                    attempt, exc.retry_after, self.deadline.remaining(), self.rand
                )
                if wait is None:
                    raise MendaCloudAPIError(
                        f"{exc.message} (gave up after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''})",
                        exc.status_code,
                        exc.retry_after,
                        transient=True,
                    ) from None
            yield Sleep(wait)


def _login_flag(identity: Identity) -> str:
    return f" --profile {shown(identity.profile or '')}" if identity.profile != "default" else ""


def no_login_error(identity: Identity, cache: Path, why: str = "") -> NoCachedLoginError:
    """What a user identity without a usable login is told, in process and by the daemon;
    ``why``: what menda-cloud said when it refused to refresh the login."""
    profile = shown(identity.profile or "")
    because = f": {why}" if why else ""
    return NoCachedLoginError(
        f"No valid cached token for profile [{profile}] (host {identity.host}) in {cache}"
        f"{because}. Run menda auth login{_login_flag(identity)}, or use machine credentials "
        "(auth_type = m2m)."
    )


def login_rejected_error(identity: Identity) -> NoCachedLoginError:
    """menda-cloud refused a user's access token, and the login cannot be refreshed."""
    return NoCachedLoginError(
        f"No valid cached token: menda-cloud {identity.host} rejected the signed-in token of "
        f"{identity.label}. Run menda auth login{_login_flag(identity)}"
    )


def invalid_login_error(identity: Identity, cache: Path, problem: str) -> InvalidLoginEntryError:
    """A login whose entry cannot be refreshed as written; the entry is left as it is."""
    profile = shown(identity.profile or "")
    return InvalidLoginEntryError(
        f"The login of profile [{profile}] in {cache} cannot be refreshed: {problem}. "
        f"Run menda auth login{_login_flag(identity)} to replace it."
    )
