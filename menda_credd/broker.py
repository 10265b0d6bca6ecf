"""The daemon's token engine: registry tokens in memory, one flight per key, refreshed ahead.

Registry tokens are keyed by :func:`menda_keyring.registry_keys.registry_key`
(identity, login scope, domain), as in-process memory keys them:
one token serves every repository of a domain. They live in memory only. Every
resolution is the flow of :mod:`menda_keyring.resolution`, run by the asynchronous
driver (:mod:`menda_credd.resolve_async`), so the daemon answers exactly what
in-process resolution would, and Menda access tokens come from (and go to) the token
cache shared with in-process callers and the Menda CLI, under the same lock.

Structure (anyio): the broker is an async context manager owning one task group, in
which every flight runs and one timer task wakes entries when their refresh or idle
time comes (:class:`~menda_credd.refresh.RefreshSchedule`). Requests wait on a flight
under their own deadline; a request flight that nobody waits for any more is
cancelled. Memory is bounded: at most ``max_entries`` entries (the least recently used
go first) and at most ``max_flights`` flights at once (beyond that a request is told
the daemon is busy, and the shim resolves in process).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup

from menda_keyring.cloud_protocol import REFRESH_WHAT, HttpRequest
from menda_keyring.errors import DaemonBusy, MendaCloudAPIError, MendaError
from menda_keyring.identity import Identity
from menda_keyring.paths import token_cache_path
from menda_keyring.registry_keys import Key, registry_key
from menda_keyring.resolution import Resolution
from menda_keyring.retry import DEFAULT_CEILING, Deadline, RetryPolicy
from menda_keyring.tokens import AccessToken, RegistryToken
from menda_keyring.urls import RegistryTarget

from . import refresh
from .counters import Counters
from .entries import Entry, Flight, describe, status_row
from .resolve_async import MAX_PER_HOST, MAX_UPSTREAM, AsyncEffects, AsyncSend, drive
from .user_logins import UserLogins

log = logging.getLogger("menda_credd.broker")

DEFAULT_IDLE_TIMEOUT = 8 * 3600.0
#: At most this many (identity, domain) entries in memory; the least recently used go.
MAX_ENTRIES = 10_000
#: At most this many resolutions at once; a request beyond it is answered "busy".
MAX_FLIGHTS = 128
#: A background refresh makes one HTTP try per attempt: the refresh timer already backs
#: off between attempts, and more tries would multiply the calls to a menda-cloud in trouble.
BACKGROUND_POLICY = RetryPolicy(max_attempts=1)
#: The counter of each call to menda-cloud (``HttpRequest.what``); the rest: registry.
_COUNTER_OF = {"oauth2/token": "exchanges_oauth", REFRESH_WHAT: "login_refreshes"}


class Broker:
    """Owns every entry and flight; use as ``async with Broker(send) as broker``."""

    def __init__(
        self,
        send: AsyncSend,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        policy: RetryPolicy | None = None,
        max_upstream: int = MAX_UPSTREAM,
        max_per_host: int = MAX_PER_HOST,
        max_entries: int = MAX_ENTRIES,
        max_flights: int = MAX_FLIGHTS,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.rand = rand
        self.policy = policy or RetryPolicy()
        self.max_entries = max_entries
        self.max_flights = max_flights
        self.counters = Counters()
        self.logins = UserLogins(self._login, self._forget_login, clock)
        self.effects = AsyncEffects(
            send,
            max_upstream,
            max_per_host,
            on_send=self._counted,
            on_refreshed=self.logins.refreshed,
        )
        #: Least recently used first.
        self.entries: OrderedDict[Key, Entry] = OrderedDict()
        self.schedule: refresh.RefreshSchedule[Key] = refresh.RefreshSchedule()
        #: Refreshes to a failing menda-cloud host back off together, one probe at a time.
        self.backoff: refresh.UpstreamBackoff[str] = refresh.UpstreamBackoff()
        self.flights = 0
        self._tg: TaskGroup | None = None
        self._wakeup = anyio.Event()
        self._closed = False

    async def __aenter__(self) -> Broker:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._timer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self.close()
        assert self._tg is not None
        return await self._tg.__aexit__(exc_type, exc, tb)

    def count(self, name: str, by: int = 1) -> None:
        self.counters.count(name, by)

    # -- requests ----------------------------------------------------------------------

    def serve_cached(
        self, identity: Identity, target: RegistryTarget, scope: str = ""
    ) -> Entry | None:
        """The hot path: the entry holding a servable token, counted as a hit and marked used."""
        entry = self.entries.get(registry_key(identity, target, scope))
        if entry is None:
            return None
        now = self.clock()
        if entry.servable_token(now) is None:
            return None
        self._touch(entry, now)
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
        """A servable token for ``(identity, target)``; waits on (or starts) its one flight.

        ``scope`` (from :meth:`user_scope`) separates the tokens of successive user logins.
        """
        served = self.serve_cached(identity, target, scope)
        if served is not None and served.token is not None:
            return served.token
        key = registry_key(identity, target, scope)
        entry = self.entries.get(key)
        if entry is None:
            entry = self._add(Entry(key, identity, target, home, last_used=self.clock()))
        else:
            entry.identity, entry.home = identity, home
            self._touch(entry, self.clock())
        self.count("waits")
        flight = entry.flight
        if flight is None:
            if self.flights >= self.max_flights:
                self.count("busy")
                raise DaemonBusy(f"menda-credd is busy ({self.flights} exchanges in flight)")
            flight = self._start(entry, deadline, background=False)
        flight.join(self.policy)
        try:
            with anyio.move_on_after(max(deadline.remaining(), 0.0)):
                await flight.done.wait()
        finally:
            flight.waiters -= 1
            if not flight.waiters and not flight.background and not flight.done.is_set():
                self._abandon(entry, flight)
        if not flight.done.is_set():
            raise deadline.expired_error("waiting for menda-cloud registry/token")
        if flight.error is not None:
            raise flight.error
        if flight.result is None:
            raise DaemonBusy("menda-credd stopped this exchange (shutting down)")
        return flight.result

    async def user_scope(self, identity: Identity, home: Path, deadline: Deadline) -> str:
        """For a u2m identity: the current login's scope (raises as in process without one)."""
        return await self.logins.scope(identity, home, deadline)

    async def _login(self, identity: Identity, cache: Path, deadline: Deadline) -> AccessToken:
        resolution = Resolution(identity, None, cache, deadline, self.policy, self.clock, self.rand)
        return await drive(resolution.login(), self.effects)

    def _forget_login(self, prefix: str) -> None:
        for entry in [e for e in self.entries.values() if e.key[0] == prefix]:
            if entry.flight is None:
                self._drop(entry, "signed in again")

    # -- flights -----------------------------------------------------------------------

    def prewarm(
        self, identity: Identity, target: RegistryTarget, home: Path, scope: str = ""
    ) -> Flight | None:
        """Start a background exchange for a pair before anyone asks (pre-warm).

        None when there is nothing to do: the pair has a servable token, or a flight
        already (one flight per key: a pre-warm never makes a second exchange). Pre-warms
        take at most half of ``max_flights``, so requests always find room.
        """
        key = (identity.fingerprint + scope, target)
        entry = self.entries.get(key)
        now = self.clock()
        if entry is not None and (entry.flight is not None or entry.servable_token(now)):
            return None
        if self.flights >= self.max_flights // 2:
            raise DaemonBusy(f"menda-credd is busy ({self.flights} exchanges in flight)")
        if entry is None:
            entry = self._add(Entry(key, identity, target, home, last_used=now))
        deadline = Deadline(DEFAULT_CEILING, clock=anyio.current_time)
        return self._start(entry, deadline, background=True, prewarm=True)

    def _start(
        self, entry: Entry, deadline: Deadline, background: bool, prewarm: bool = False
    ) -> Flight:
        if self._tg is None or self._closed:
            raise DaemonBusy("menda-credd is not serving (broker not running)")
        resolution = Resolution(
            entry.identity,
            entry.target,
            token_cache_path(entry.home),
            deadline,
            BACKGROUND_POLICY if background else self.policy,
            self.clock,
            self.rand,
        )
        flight = Flight(resolution, background, prewarm)
        entry.flight = flight
        self.flights += 1
        log.debug(
            "%s for %s, domain %s",
            "pre-warm" if prewarm else "refresh" if background else "exchange",
            entry.identity.label,
            describe(entry.target),
        )
        self._tg.start_soon(self._fly, entry, flight)
        return flight

    async def _fly(self, entry: Entry, flight: Flight) -> None:
        try:
            with flight.scope:
                flight.result = await drive(flight.resolution.run(), self.effects)
        except MendaError as exc:
            flight.error = exc
        finally:
            self.flights -= 1
            if entry.flight is flight:
                entry.flight = None
            flight.done.set()
        if flight.result is not None:
            self._landed(entry, flight.result, flight)
        elif flight.error is not None:
            self._failed(entry, flight.error, flight)
        self._after_flight(entry)

    def _abandon(self, entry: Entry, flight: Flight) -> None:
        """Nobody waits for this request's flight any more: stop it, free its upstream slot."""
        flight.scope.cancel()
        if entry.flight is flight:
            entry.flight = None
        self.count("flights_cancelled")

    def _landed(self, entry: Entry, token: RegistryToken, flight: Flight) -> None:
        background = flight.background
        now = self.clock()
        replaces = entry.servable_token(now) is not None
        entry.token = token
        entry.last_refresh = now
        entry.last_error = None
        entry.retry_after = None
        entry.refresh_failures = 0
        entry.refresh_at = refresh.refresh_due(
            token.issued_at, token.expires_at, self.rand(), first=not replaces
        )
        self.backoff.succeeded(entry.identity.host)
        if flight.prewarm:
            entry.prewarmed_at = entry.last_refresh
            self.count("prewarms")
        elif background:
            self.count("refreshes")
        log.info(
            "%s token for %s, domain %s, valid %.0f s",
            "pre-warmed" if flight.prewarm else "refreshed" if background else "new",
            entry.identity.label,
            describe(entry.target),
            token.lifetime,
        )

    def _failed(self, entry: Entry, error: MendaError, flight: Flight) -> None:
        entry.last_error = error.kind
        entry.retry_after = error.retry_after if isinstance(error, MendaCloudAPIError) else None
        if flight.prewarm:
            self.count("prewarm_failures")
            if flight.waiters:
                self.count("failures")  # a request had joined it
            return  # the pre-warmer decides what it means (and logs it)
        background = flight.background
        if not background:
            self.count("failures")
            log.info(
                "exchange failed for %s, domain %s: %s",
                entry.identity.label,
                describe(entry.target),
                error.kind,
            )
            return
        self.count("refresh_failures")
        entry.refresh_failures += 1
        if refresh.host_is_failing(error):
            self.backoff.failed(entry.identity.host, self.clock(), self.rand(), entry.retry_after)
        log.warning(
            "refresh failed for %s, domain %s (%s); %s",
            entry.identity.label,
            describe(entry.target),
            error.kind,
            "still serving the current token"
            if entry.servable_token(self.clock()) is not None
            else "the current token has run out",
        )

    def _after_flight(self, entry: Entry) -> None:
        """Arm the entry's wake-up, or drop it when there is nothing worth keeping."""
        if self._closed or self.entries.get(entry.key) is not entry or entry.flight is not None:
            return
        now = self.clock()
        token = entry.servable_token(now)
        if token is None:
            # A rate limit that said when to come back keeps the entry's place: see
            # refresh.keep_place_delay.
            wait = refresh.keep_place_delay(
                entry.retry_after, entry.refresh_failures + 1, self.rand()
            )
            if wait is None:
                self._drop(entry, "no servable token")
                return
            entry.refresh_at = now + wait
        elif entry.refresh_failures:
            left = token.remaining(now) - token.min_remaining()
            delay = refresh.retry_delay(
                entry.refresh_failures, self.rand(), time_left=left, retry_after=entry.retry_after
            )
            entry.refresh_at = now + delay
        self._arm(entry)

    # -- the timer -----------------------------------------------------------------------

    def _arm(self, entry: Entry) -> None:
        when = refresh.next_wakeup(entry.refresh_at, entry.last_used, self.idle_timeout)
        self.schedule.arm(entry.key, when)
        self._wakeup.set()

    async def _timer(self) -> None:
        """The one task that wakes entries: sleeps until the earliest wake-up, or a new one."""
        while True:
            for key in self.schedule.pop_due(self.clock()):
                entry = self.entries.get(key)
                if entry is not None:
                    self._wake(entry)
            next_at = self.schedule.next_at()
            self._wakeup = anyio.Event()
            delay = None if next_at is None else max(next_at - self.clock(), 0.0)
            with anyio.move_on_after(delay):
                await self._wakeup.wait()

    def _wake(self, entry: Entry) -> None:
        now = self.clock()
        if refresh.is_idle(now, entry.last_used, self.idle_timeout):
            self._drop(entry, "idle")
            return
        if entry.refresh_at is not None and now >= entry.refresh_at:
            if entry.flight is None:
                wait = self.backoff.wait(entry.identity.host, now)
                if wait > 0:  # another refresh is probing this failing host, or will
                    entry.refresh_at = now + wait
                    self._arm(entry)
                    return
                entry.refresh_at = None
                deadline = Deadline(DEFAULT_CEILING, clock=anyio.current_time)
                self._start(entry, deadline, background=True)
            return  # the flight arms the next wake-up when it lands
        self._arm(entry)

    # -- the table of entries ------------------------------------------------------------

    def _touch(self, entry: Entry, now: float) -> None:
        entry.last_used = now
        entry.requests += 1
        self.entries.move_to_end(entry.key)

    def _add(self, entry: Entry) -> Entry:
        self.entries[entry.key] = entry
        excess = len(self.entries) - self.max_entries
        if excess > 0:
            idle = (e for e in self.entries.values() if e.flight is None and e is not entry)
            for victim in list(itertools.islice(idle, excess)):
                self._drop(victim, "least recently used, over the entry limit")
                self.count("entries_evicted")
        return entry

    def _drop(self, entry: Entry, why: str) -> None:
        self.schedule.disarm(entry.key)
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
            self.count("entries_dropped")
            log.info(
                "dropped %s, domain %s (%s)", entry.identity.label, describe(entry.target), why
            )

    def close(self) -> None:
        """Stop every flight and the timer (shutdown); entries and tokens are forgotten."""
        self._closed = True
        for entry in self.entries.values():
            if entry.flight is not None:
                entry.flight.scope.cancel()
        self.entries.clear()
        self.schedule = refresh.RefreshSchedule()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    # -- status --------------------------------------------------------------------------

    def _counted(self, request: HttpRequest) -> None:
        self.count(_COUNTER_OF.get(request.what, "exchanges_registry"))

    def snapshot(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows for ``status``, most recently used first (at most ``limit``)."""
        now = self.clock()
        rows: list[dict[str, Any]] = []
        for entry in reversed(self.entries.values()):
            if limit is not None and len(rows) >= limit:
                break
            rows.append(status_row(entry, now))
        return rows

    def summary(self) -> dict[str, Any]:
        """Counts for ``status`` whatever the number of entries: by state, and identities."""
        now = self.clock()
        by_state: dict[str, int] = {}
        for entry in self.entries.values():
            state = entry.state(now)
            by_state[state] = by_state.get(state, 0) + 1
        return {
            "entries": len(self.entries),
            "identities": len({entry.key[0] for entry in self.entries.values()}),
            "by_state": by_state,
            "flights": self.flights,
            "max_entries": self.max_entries,
        }
