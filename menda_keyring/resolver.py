"""In-process resolution: service URL to CodeArtifact token, with the standard library only.

The flow the contract asks for, in order: identity, Menda access token (cached
on disk and shared across processes under the cache lock, so a herd of cold
processes makes one OAuth exchange), then the registry exchange with bounded
retries. Registry tokens are returned, never written anywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from . import token_cache
from .cloud_protocol import (
    AccessTokenRejected,
    HttpRequest,
    HttpResponse,
    TransientError,
    oauth_request,
    parse_oauth_response,
    parse_registry_response,
    registry_request,
)
from .errors import (
    MendaCloudAPIError,
    MendaError,
    NoCachedLoginError,
    redact,
    shown,
)
from .fileutil import LockTimeout, ensure_private_dir, exclusive_lock
from .identity import Identity, home_from_env, resolve_identity, token_cache_path
from .retry import Deadline, RetryPolicy, call_timeout, ceiling_from_env
from .tokens import AccessToken, RegistryToken
from .urls import RegistryTarget

Send = Callable[[HttpRequest, float], HttpResponse]
DEFAULT_POLICY = RetryPolicy()


def _default_send(request: HttpRequest, timeout: float) -> HttpResponse:
    from .http_sync import send

    return send(request, timeout)


def call_with_retries(
    request: HttpRequest,
    parse: Callable[[HttpResponse], object],
    deadline: Deadline,
    send: Send,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> object:
    """Send and parse, retrying transient failures with jittered backoff inside the deadline."""
    attempt = 0
    while True:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise deadline.expired_error(f"calling menda-cloud {request.what}")
        attempt += 1
        try:
            return parse(send(request, call_timeout(remaining)))
        except MendaError as exc:
            redact(exc, request.secrets)
            if not isinstance(exc, TransientError):
                raise
            wait = policy.delay(attempt, exc.retry_after, deadline.remaining())
            if wait is None:
                raise MendaCloudAPIError(
                    f"{exc.message} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})",
                    exc.status_code,
                ) from None
            sleep(wait)


class InProcessResolver:
    """Resolves one request in the calling process. Every input is explicit for tests."""

    def __init__(
        self,
        env: Mapping[str, str],
        send: Send = _default_send,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        self.env = env
        self.home = home_from_env(env)
        self.send = send
        self.clock = clock
        self.policy = policy

    def resolve(self, target: RegistryTarget) -> RegistryToken:
        deadline = Deadline(ceiling_from_env(self.env))
        identity = resolve_identity(self.env, self.home)
        try:
            return self._resolve(identity, target, deadline)
        except MendaError as exc:
            raise redact(exc, (identity.client_secret or "",)) from None

    def _resolve(
        self, identity: Identity, target: RegistryTarget, deadline: Deadline
    ) -> RegistryToken:
        cache = token_cache_path(self.home)
        access = self.access_token(identity, cache, deadline)
        try:
            return self._exchange(identity, access, target, deadline)
        except AccessTokenRejected:
            # Machine identity: drop the rejected token, get a new one once, retry once.
            access = self.access_token(identity, cache, deadline, rejected=access.token)
            try:
                return self._exchange(identity, access, target, deadline)
            except AccessTokenRejected as again:
                raise MendaCloudAPIError(
                    f"{again.message}, also with a freshly issued token", 401
                ) from None

    def _exchange(
        self, identity: Identity, access: AccessToken, target: RegistryTarget, deadline: Deadline
    ) -> RegistryToken:
        request = registry_request(identity.host, access.token, target)
        token = call_with_retries(
            request,
            lambda r: parse_registry_response(r, identity, target, self.clock()),
            deadline,
            self.send,
            self.policy,
        )
        assert isinstance(token, RegistryToken)
        return token

    def access_token(
        self, identity: Identity, cache: Path, deadline: Deadline, rejected: str | None = None
    ) -> AccessToken:
        """A usable Menda token: from the shared cache, or (machines) from one OAuth exchange."""
        if identity.auth_type == "u2m":
            cached = token_cache.lookup(cache, identity, self.clock())
            if cached is None or cached.token == rejected:
                raise NoCachedLoginError(
                    f"No valid cached token for profile [{shown(identity.profile or '')}] "
                    f"(host {identity.host}) in {cache}. Run menda auth login"
                    + (
                        f" --profile {shown(identity.profile or '')}"
                        if identity.profile != "default"
                        else ""
                    )
                    + ", or use machine credentials (auth_type = m2m)."
                )
            return cached
        if rejected is None:
            cached = token_cache.lookup(cache, identity, self.clock())
            if cached is not None:
                return cached
        ensure_private_dir(cache.parent)
        try:
            with exclusive_lock(token_cache.lock_path_for(cache), deadline.remaining()):
                # Whoever held the lock before us may have just fetched one.
                cached = token_cache.lookup(cache, identity, self.clock())
                if cached is not None and cached.token != rejected:
                    return cached
                if rejected is not None:
                    token_cache.drop(cache, identity, rejected)
                token = call_with_retries(
                    oauth_request(identity),
                    lambda r: parse_oauth_response(r, identity, self.clock()),
                    deadline,
                    self.send,
                    self.policy,
                )
                assert isinstance(token, AccessToken)
                # An unwritable cache costs an exchange next time, not this answer.
                with contextlib.suppress(OSError):
                    token_cache.store(cache, identity, token)
                return token
        except LockTimeout:
            raise deadline.expired_error(f"waiting for the token cache lock {cache}.lock") from None
