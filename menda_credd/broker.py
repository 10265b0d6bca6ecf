"""The daemon's token engine: registry tokens in memory, single-flight, refreshed ahead.

Registry tokens are keyed by ``(identity.fingerprint, RegistryTarget)``: one token
serves every repository of a domain. They live in memory only and are never
written anywhere. Menda machine access tokens are kept in memory too and are read
from, and written through to, the on-disk cache shared with in-process callers and
the Menda CLI (under the same flock, in a worker thread so the loop never blocks).
User (u2m) tokens are read from that cache whenever one is needed, so a new
``menda auth login`` is noticed without restarting the daemon.

Every decision about what menda-cloud's answers mean comes from
``menda_keyring.cloud_protocol`` and ``menda_keyring.resolver``, so the daemon answers
exactly what in-process resolution would.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from menda_keyring import token_cache
from menda_keyring.cloud_protocol import (
    AccessTokenRejected,
    HttpRequest,
    HttpResponse,
    TransientError,
    parse_registry_response,
    registry_request,
)
from menda_keyring.errors import MendaCloudAPIError, MendaError, redact
from menda_keyring.identity import Identity, token_cache_path
from menda_keyring.resolver import InProcessResolver
from menda_keyring.retry import DEFAULT_CEILING, Deadline, RetryPolicy, call_timeout
from menda_keyring.tokens import AccessToken, RegistryToken
from menda_keyring.urls import RegistryTarget

from . import refresh

log = logging.getLogger("menda_credd.broker")

AsyncSend = Callable[[HttpRequest, float], Awaitable[HttpResponse]]
Key = tuple[str, RegistryTarget]

DEFAULT_IDLE_TIMEOUT = 8 * 3600.0
MAX_UPSTREAM = 4
COUNTERS = (
    "requests",
    "hits",
    "waits",
    "exchanges_oauth",
    "exchanges_registry",
    "refreshes",
    "refresh_failures",
    "failures",
    "entries_dropped",
    "peer_rejections",
    "connections",
    "connections_refused",
    "connections_evicted",
    "bad_requests",
)


class FlightMode:
    """Whether anyone waits in the foreground for a flight (a ``get`` on a cold entry).

    A background refresh makes one HTTP try per attempt: the refresh timer already backs
    off (capped, jittered) between attempts, so ``RetryPolicy``'s tries inside each attempt
    would only multiply the calls to a menda-cloud in trouble. Once a foreground request
    joins the flight (directly, or through a flight that waits on it), the normal policy
    applies to the tries still to come, as it would had that request started the flight.
    """

    __slots__ = ("foreground", "parents")

    def __init__(self, foreground: bool) -> None:
        self.foreground = foreground
        self.parents: list[FlightMode] = []

    def waited_on(self) -> bool:
        if self.foreground:
            return True
        return any(parent.waited_on() for parent in self.parents)

    def join(self, other: FlightMode) -> None:
        """``other``'s flight waits on this one."""
        if other.foreground:
            self.foreground = True
        elif other is not self and other not in self.parents:
            self.parents.append(other)


@dataclass(frozen=True)
class FlightPolicy(RetryPolicy):
    """``RetryPolicy`` for one flight: a single try while only the refresh timer waits."""

    mode: FlightMode | None = field(default=None, compare=False)

    def delay(
        self,
        attempt: int,
        retry_after: float | None,
        remaining: float,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        if self.mode is not None and not self.mode.waited_on():
            return None  # background: one try per attempt
        return super().delay(attempt, retry_after, remaining, rand)


@dataclass(eq=False)
class Entry:
    """One (identity, CodeArtifact domain) the daemon keeps a token for."""

    key: Key
    identity: Identity
    target: RegistryTarget
    home: Path
    last_used: float
    token: RegistryToken | None = None
    flight: asyncio.Task[RegistryToken] | None = field(default=None, repr=False)
    flight_mode: FlightMode | None = field(default=None, repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    refresh_at: float | None = None
    last_refresh: float | None = None
    refresh_failures: int = 0
    requests: int = 0
    last_error: str | None = None
    #: The server's encoded answer for ``token`` (kept with the token it encodes, so a new
    #: token never gets an old answer); dropped with the entry.
    answer: tuple[RegistryToken, bytes] | None = field(default=None, repr=False)


class Broker:
    """Owns every entry and the single flights; all methods run on the event loop."""

    def __init__(
        self,
        send: AsyncSend,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        policy: RetryPolicy | None = None,
        max_upstream: int = MAX_UPSTREAM,
    ) -> None:
        self._send_upstream = send
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.rand = rand
        self.policy = policy or RetryPolicy()
        self.entries: dict[Key, Entry] = {}
        self.access: dict[str, AccessToken] = {}
        self.oauth_flights: dict[str, asyncio.Task[AccessToken]] = {}
        self._oauth_modes: dict[str, FlightMode] = {}
        self._user_files: dict[str, tuple[tuple[int, ...], token_cache.CacheSnapshot]] = {}
        self._user_scopes: dict[str, str] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._upstream = asyncio.Semaphore(max_upstream)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    # -- requests ----------------------------------------------------------------------

    def peek(
        self, identity: Identity, target: RegistryTarget, scope: str = ""
    ) -> RegistryToken | None:
        """A servable token already in memory (the hot path), else None."""
        entry = self.lookup(identity, target, scope)
        return None if entry is None else entry.token

    def lookup(self, identity: Identity, target: RegistryTarget, scope: str = "") -> Entry | None:
        """:meth:`peek`, returning the entry whose ``token`` is servable (counted as a hit)."""
        entry = self.entries.get((identity.fingerprint + scope, target))
        if entry is None or entry.token is None:
            return None
        now = self.clock()
        if not entry.token.servable(now):
            return None
        entry.last_used = now
        entry.requests += 1
        self.count("hits")
        return entry

    async def get(
        self,
        identity: Identity,
        target: RegistryTarget,
        home: Path,
        deadline: Deadline,
        scope: str = "",
    ) -> RegistryToken:
        """A servable token for ``(identity, target)``; waits on (or starts) the one exchange.

        ``scope`` (from :meth:`user_scope`) separates the tokens of successive user logins.
        """
        token = self.peek(identity, target, scope)
        if token is not None:
            return token
        key = (identity.fingerprint + scope, target)
        now = self.clock()
        entry = self.entries.get(key)
        if entry is None:
            entry = Entry(key, identity, target, home, last_used=now)
            self.entries[key] = entry
        entry.identity, entry.home, entry.last_used = identity, home, now
        entry.requests += 1
        self.count("waits")
        if entry.flight is None:
            entry.flight = self._start_flight(entry, deadline, background=False)
        elif entry.flight_mode is not None:
            entry.flight_mode.foreground = True  # a refresh in flight: full policy from now
        flight = entry.flight
        try:
            return await asyncio.wait_for(asyncio.shield(flight), max(deadline.remaining(), 0))
        except asyncio.TimeoutError:
            raise deadline.expired_error("waiting for menda-cloud registry/token") from None

    async def user_scope(self, identity: Identity, home: Path, deadline: Deadline) -> str:
        """For a u2m identity: check the signed-in token is still in the shared cache.

        In process, every call reads that token, so a ``menda auth logout`` or a login as
        someone else takes effect at once; the daemon does the same (one ``stat`` when the
        file did not change) and keys registry tokens by the login they came from. Raises
        exactly what in-process resolution raises when there is no usable login.
        """
        cache = token_cache_path(home)
        try:
            st = os.stat(cache)
            version: tuple[int, ...] | None = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        except OSError:
            version = None
        memo = self._user_files.get(str(cache))
        if version is not None and memo is not None and memo[0] == version:
            snapshot = memo[1]
        else:
            snapshot = await asyncio.to_thread(token_cache.read_snapshot, cache)
            if version is not None:
                if len(self._user_files) >= 64:
                    self._user_files.clear()
                self._user_files[str(cache)] = (version, snapshot)
        token = token_cache.entry_to_token(snapshot.tokens.get(identity.cache_key), identity)
        if token is None or not token.usable(self.clock()):
            # The in-process code raises the very error (or finds a token just written).
            token = await asyncio.to_thread(
                self._disk_access_token, identity, home, cache, deadline, None, None
            )
        scope = ":" + hashlib.sha256(token.token.encode()).hexdigest()[:16]
        previous = self._user_scopes.get(identity.fingerprint)
        if previous != scope:
            self._user_scopes[identity.fingerprint] = scope
            if previous is not None:
                for entry in list(self.entries.values()):
                    if entry.key[0] == identity.fingerprint + previous and entry.flight is None:
                        self._drop(entry, "signed in again")
        return scope

    # -- flights -----------------------------------------------------------------------

    def _start_flight(
        self, entry: Entry, deadline: Deadline, background: bool
    ) -> asyncio.Task[RegistryToken]:
        entry.flight_mode = FlightMode(foreground=not background)
        task = self.loop.create_task(self._fetch(entry, deadline, background))

        def done(t: asyncio.Task[RegistryToken]) -> None:
            if entry.flight is t:
                entry.flight = None
                entry.flight_mode = None
            if not t.cancelled():
                t.exception()  # retrieved: background failures are handled in _fetch
            self._after_flight(entry)

        task.add_done_callback(done)
        return task

    async def _fetch(self, entry: Entry, deadline: Deadline, background: bool) -> RegistryToken:
        what = "refresh" if background else "exchange"
        log.debug("%s for %s, domain %s", what, entry.identity.label, _domain(entry.target))
        mode = entry.flight_mode or FlightMode(foreground=not background)
        try:
            token = await self._resolve(entry.identity, entry.target, entry.home, deadline, mode)
        except MendaError as exc:
            entry.last_error = exc.kind
            if background:
                self.count("refresh_failures")
                entry.refresh_failures += 1
                log.warning(
                    "refresh failed for %s, domain %s (%s); %s",
                    entry.identity.label,
                    _domain(entry.target),
                    exc.kind,
                    "still serving the current token"
                    if entry.token is not None and entry.token.servable(self.clock())
                    else "the current token has run out",
                )
            else:
                self.count("failures")
                log.info(
                    "exchange failed for %s, domain %s: %s",
                    entry.identity.label,
                    _domain(entry.target),
                    exc.kind,
                )
            raise
        entry.token = token
        entry.last_refresh = self.clock()
        entry.last_error = None
        entry.refresh_failures = 0
        entry.refresh_at = refresh.refresh_due(token.issued_at, token.expires_at, self.rand())
        if background:
            self.count("refreshes")
        log.info(
            "%s token for %s, domain %s, valid %.0f s",
            "refreshed" if background else "new",
            entry.identity.label,
            _domain(entry.target),
            token.lifetime,
        )
        return token

    def _after_flight(self, entry: Entry) -> None:
        """Arm the entry's one timer, or drop it when there is nothing worth keeping."""
        if self._closed or self.entries.get(entry.key) is not entry or entry.flight is not None:
            return
        now = self.clock()
        if entry.token is None or not entry.token.servable(now):
            self._drop(entry, "no servable token")
            return
        if entry.refresh_failures:
            left = entry.token.remaining(now) - entry.token.min_remaining()
            delay = refresh.retry_delay(entry.refresh_failures, self.rand(), time_left=left)
            entry.refresh_at = now + delay
        self._arm(entry)

    def _arm(self, entry: Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        when = refresh.next_wakeup(entry.refresh_at, entry.last_used, self.idle_timeout)
        entry.timer = self.loop.call_later(max(when - self.clock(), 0.0), self._wake, entry)

    def _wake(self, entry: Entry) -> None:
        entry.timer = None
        if self._closed or self.entries.get(entry.key) is not entry:
            return
        now = self.clock()
        if refresh.is_idle(now, entry.last_used, self.idle_timeout):
            self._drop(entry, "idle")
            return
        if entry.refresh_at is not None and now >= entry.refresh_at:
            if entry.flight is None:
                entry.refresh_at = None
                entry.flight = self._start_flight(entry, Deadline(DEFAULT_CEILING), True)
            return  # the flight arms the next timer when it lands
        self._arm(entry)

    def _drop(self, entry: Entry, why: str) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
            self.count("entries_dropped")
            log.info("dropped %s, domain %s (%s)", entry.identity.label, _domain(entry.target), why)

    def close(self) -> None:
        """Stop every timer and background flight (shutdown)."""
        self._closed = True
        for entry in list(self.entries.values()):
            if entry.timer is not None:
                entry.timer.cancel()
            if entry.flight is not None:
                entry.flight.cancel()
        for flight in self.oauth_flights.values():
            flight.cancel()
        self.entries.clear()
        self.access.clear()

    # -- the resolution itself (mirrors menda_keyring.resolver) ------------------------

    def _policy(self, mode: FlightMode | None) -> RetryPolicy:
        """The retry policy of a flight: ``self.policy``, one try while in the background."""
        if mode is None or mode.foreground:
            return self.policy
        kept = {f.name: getattr(self.policy, f.name) for f in fields(RetryPolicy)}
        return FlightPolicy(**kept, mode=mode)

    async def _resolve(
        self,
        identity: Identity,
        target: RegistryTarget,
        home: Path,
        deadline: Deadline,
        mode: FlightMode | None = None,
    ) -> RegistryToken:
        cache = token_cache_path(home)
        access = await self._access_token(identity, home, cache, deadline, None, mode)
        try:
            return await self._exchange(identity, access, target, deadline, mode)
        except AccessTokenRejected:
            access = await self._access_token(identity, home, cache, deadline, access.token, mode)
            try:
                return await self._exchange(identity, access, target, deadline, mode)
            except AccessTokenRejected as again:
                raise MendaCloudAPIError(
                    f"{again.message}, also with a freshly issued token", 401
                ) from None

    async def _exchange(
        self,
        identity: Identity,
        access: AccessToken,
        target: RegistryTarget,
        deadline: Deadline,
        mode: FlightMode | None = None,
    ) -> RegistryToken:
        request = registry_request(identity.host, access.token, target)
        token = await self._call_with_retries(
            request,
            lambda r: parse_registry_response(r, identity, target, self.clock()),
            deadline,
            self._policy(mode),
        )
        assert isinstance(token, RegistryToken)
        return token

    async def _call_with_retries(
        self,
        request: HttpRequest,
        parse: Callable[[HttpResponse], Any],
        deadline: Deadline,
        policy: RetryPolicy | None = None,
    ) -> Any:
        """``menda_keyring.resolver.call_with_retries``, awaiting instead of sleeping."""
        policy = self.policy if policy is None else policy
        attempt = 0
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise deadline.expired_error(f"calling menda-cloud {request.what}")
            attempt += 1
            try:
                return parse(await self.send(request, call_timeout(remaining)))
            except MendaError as exc:
                redact(exc, getattr(request, "secrets", ()))
                if not isinstance(exc, TransientError):
                    raise
                wait = policy.delay(attempt, exc.retry_after, deadline.remaining())
                if wait is None:
                    raise MendaCloudAPIError(
                        f"{exc.message} (gave up after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''})",
                        exc.status_code,
                    ) from None
                await asyncio.sleep(wait)

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """Every upstream call: counted, and at most ``max_upstream`` at once."""
        async with self._upstream:
            self.count(
                "exchanges_oauth" if request.what == "oauth2/token" else "exchanges_registry"
            )
            return await self._send_upstream(request, timeout)

    def _send_from_thread(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """The sync ``send`` the in-process resolver code calls from a worker thread."""
        future = asyncio.run_coroutine_threadsafe(self.send(request, timeout), self.loop)
        try:
            return future.result(timeout + 5.0)
        except TimeoutError:
            future.cancel()
            raise TransientError(
                f"menda-cloud {request.url}: no answer within {timeout:.1f} s"
            ) from None

    async def _access_token(
        self,
        identity: Identity,
        home: Path,
        cache: Path,
        deadline: Deadline,
        rejected: str | None = None,
        mode: FlightMode | None = None,
    ) -> AccessToken:
        """A usable Menda access token: memory, then the shared disk cache, then OAuth."""
        if identity.auth_type == "u2m":
            # Always from disk: notices a new ``menda auth login`` without a restart.
            return await asyncio.to_thread(
                self._disk_access_token, identity, home, cache, deadline, rejected, mode
            )
        fingerprint = identity.fingerprint
        for _ in range(2):
            held = self.access.get(fingerprint)
            if held is not None:
                if rejected is None and held.usable(self.clock()):
                    return held
                if held.token == rejected or not held.usable(self.clock()):
                    del self.access[fingerprint]
            flight = self.oauth_flights.get(fingerprint)
            if flight is None:
                oauth_mode = FlightMode(foreground=mode is None or mode.foreground)
                if mode is not None:
                    oauth_mode.join(mode)
                flight = self.loop.create_task(
                    self._obtain_access(identity, home, cache, deadline, rejected, oauth_mode)
                )
                self.oauth_flights[fingerprint] = flight
                self._oauth_modes[fingerprint] = oauth_mode

                def forget(t: asyncio.Task[AccessToken], fp: str = fingerprint) -> None:
                    if self.oauth_flights.get(fp) is t:
                        del self.oauth_flights[fp]
                        self._oauth_modes.pop(fp, None)
                    if not t.cancelled():
                        t.exception()

                flight.add_done_callback(forget)
            else:
                # Joining a flight: a foreground caller lifts its one-try background policy.
                joined = self._oauth_modes.get(fingerprint)
                if joined is not None:
                    joined.join(mode if mode is not None else FlightMode(foreground=True))
            try:
                token = await asyncio.wait_for(asyncio.shield(flight), max(deadline.remaining(), 0))
            except asyncio.TimeoutError:
                raise deadline.expired_error("obtaining a Menda access token") from None
            if rejected is None or token.token != rejected:
                return token
            # We joined a flight that started before the rejection: go once more.
        raise MendaCloudAPIError("menda-cloud keeps issuing a rejected access token", 401)

    async def _obtain_access(
        self,
        identity: Identity,
        home: Path,
        cache: Path,
        deadline: Deadline,
        rejected: str | None,
        mode: FlightMode | None = None,
    ) -> AccessToken:
        token = await asyncio.to_thread(
            self._disk_access_token, identity, home, cache, deadline, rejected, mode
        )
        self.access[identity.fingerprint] = token
        return token

    def _disk_access_token(
        self,
        identity: Identity,
        home: Path,
        cache: Path,
        deadline: Deadline,
        rejected: str | None,
        mode: FlightMode | None = None,
    ) -> AccessToken:
        """In a worker thread: the very code in-process callers run, lock and all.

        A background flight's ``mode`` gives the OAuth call there one try, like the
        registry call (:class:`FlightPolicy`).
        """
        resolver = InProcessResolver(
            {"HOME": str(home)},
            send=self._send_from_thread,
            clock=self.clock,
            policy=self._policy(mode),
        )
        return resolver.access_token(identity, cache, deadline, rejected)

    # -- status --------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """What ``status`` shows per entry: labels and times, never a token."""
        now = self.clock()
        rows = []
        for entry in self.entries.values():
            token = entry.token
            if entry.flight is not None:
                state = "refreshing" if token is not None else "exchanging"
            elif token is not None and token.servable(now):
                state = "valid"
            else:
                state = "expired"
            rows.append(
                {
                    "identity": entry.identity.label,
                    "domain": entry.target.domain,
                    "domain_owner": entry.target.owner,
                    "region": entry.target.region,
                    "state": state,
                    "issued_at": token.issued_at if token else None,
                    "expires_at": token.expires_at if token else None,
                    "last_refresh": entry.last_refresh,
                    "next_refresh": entry.refresh_at,
                    "last_used": entry.last_used,
                    "requests": entry.requests,
                    "refresh_failures": entry.refresh_failures,
                    "last_error": entry.last_error,
                }
            )
        return rows


def _domain(target: RegistryTarget) -> str:
    return f"{target.domain}-{target.owner} ({target.region})"
