"""menda-credd on one simulated host: the broker's rules, with the functions it uses.

:class:`menda_credd.broker.Broker` runs on anyio with a task per flight; ten thousand of
them would make this simulation take hours, so this model re-states its few rules and
calls the same decision functions for everything else:

- a request is answered from memory while the token is ``servable`` (tokens.py);
- otherwise it joins the entry's one flight, or starts it (the normal ``RetryPolicy``),
  and waits under its own deadline; a request flight nobody waits for is stopped;
- a landed token is refreshed at ``refresh.refresh_due``; a refresh is a background
  flight with the broker's ``BACKGROUND_POLICY`` (one try); after a failure the next try
  comes after ``refresh.retry_delay`` (via :class:`refresh.UpstreamBackoff`, one per
  menda-cloud host); an entry idle for ``idle_timeout`` is dropped; one
  ``refresh.RefreshSchedule`` per daemon holds the wake-ups;
- at most ``MAX_PER_HOST`` calls to one menda-cloud host at once (resolve_async.py).

Every flight is the real resolution flow (flows.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from menda_credd import refresh
from menda_credd.broker import BACKGROUND_POLICY, DEFAULT_IDLE_TIMEOUT
from menda_keyring.errors import MendaCloudAPIError, MendaError
from menda_keyring.identity import Identity
from menda_keyring.resolution import Resolution
from menda_keyring.retry import DEFAULT_CEILING, Deadline
from menda_keyring.tokens import RegistryToken

from .flows import CACHE, Machine, Run

if TYPE_CHECKING:
    from .scenarios import Fleet

Answer = Callable[[bool], None]


class Waiter:
    __slots__ = ("answer", "answered")

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.answered = False


class Flight:
    __slots__ = ("background", "finished", "run", "waiters")

    def __init__(self, background: bool) -> None:
        self.background = background
        self.finished = False
        self.waiters: list[Waiter] = []
        self.run: Run | None = None

    @property
    def waiting(self) -> int:
        return sum(1 for w in self.waiters if not w.answered)


class Entry:
    __slots__ = (
        "domain",
        "flight",
        "last_used",
        "pair",
        "refresh_at",
        "refresh_failures",
        "retry_after",
        "token",
    )

    def __init__(self, domain: int, pair: int, now: float) -> None:
        self.domain = domain
        self.pair = pair
        self.token: RegistryToken | None = None
        self.flight: Flight | None = None
        self.refresh_at: float | None = None
        self.refresh_failures = 0
        self.retry_after: float | None = None
        self.last_used = now


class SimDaemon:
    """One host's daemon; ``fleet`` holds the clock, the cloud, the policy and the tallies."""

    def __init__(self, fleet: Fleet, host: int, identity: Identity) -> None:
        self.fleet = fleet
        self.host = host
        self.identity = identity
        self.machine = Machine(
            fleet.loop, fleet.cloud, fleet.max_per_host, lambda: fleet.oauth_call(host)
        )
        self.entries: dict[int, Entry] = {}
        self.schedule: refresh.RefreshSchedule[int] = refresh.RefreshSchedule()
        self.backoff = refresh.UpstreamBackoff()
        self.idle_timeout = DEFAULT_IDLE_TIMEOUT
        self._timer_at: float | None = None

    # -- requests ------------------------------------------------------------------------

    def answer_from_memory(self, domain: int) -> bool:
        """The hot path (``Broker.serve_cached``): a servable token in memory, marked used."""
        entry = self.entries.get(domain)
        if entry is None or entry.token is None:
            return False
        now = self.machine.wall()
        if not entry.token.servable(now):
            return False
        entry.last_used = now
        return True

    def request(self, domain: int, answer: Answer) -> None:
        now = self.machine.wall()
        entry = self.entries.get(domain)
        if entry is not None and entry.token is not None and entry.token.servable(now):
            entry.last_used = now
            answer(True)
            return
        if entry is None:
            entry = self.entries[domain] = Entry(domain, self.host * 3 + domain, now)
        entry.last_used = now
        flight = entry.flight
        loop = self.fleet.loop
        deadline = Deadline(self.fleet.ceiling, clock=loop.clock)
        if flight is None:
            flight = self._start(entry, deadline, background=False)
        if flight.run is not None:
            flight.run.resolution.policy = self.fleet.policy  # Flight.join
        waiter = Waiter(answer)
        flight.waiters.append(waiter)
        loop.after(deadline.remaining(), self._gave_up, entry, flight, waiter)

    def _gave_up(self, entry: Entry, flight: Flight, waiter: Waiter) -> None:
        if waiter.answered:
            return
        waiter.answered = True
        waiter.answer(False)
        self.fleet.tally("daemon_request_gave_up")
        if not flight.waiting and not flight.background and not flight.finished:
            flight.finished = True
            assert flight.run is not None
            flight.run.cancel()  # Broker._abandon
            if entry.flight is flight:
                entry.flight = None
            self._after_flight(entry)

    # -- flights ------------------------------------------------------------------------

    def _start(self, entry: Entry, deadline: Deadline, background: bool) -> Flight:
        fleet = self.fleet
        resolution = Resolution(
            self.identity,
            fleet.targets[entry.domain],
            CACHE,
            deadline,
            BACKGROUND_POLICY if background else fleet.policy,
            self.machine.wall,
            fleet.rand,
        )
        flight = Flight(background)
        entry.flight = flight

        def done(token: RegistryToken | None, error: MendaError | None) -> None:
            self._landed_or_failed(entry, flight, token, error)

        flight.run = Run(self.machine, resolution, done, lambda: fleet.registry_call(entry.pair))
        flight.run.start()
        return flight

    def _landed_or_failed(
        self, entry: Entry, flight: Flight, token: RegistryToken | None, error: MendaError | None
    ) -> None:
        flight.finished = True
        if entry.flight is flight:
            entry.flight = None
        for waiter in flight.waiters:
            if not waiter.answered:
                waiter.answered = True
                waiter.answer(token is not None)
        host = self.identity.host
        now = self.machine.wall()
        if token is not None:
            replaces = entry.token is not None and entry.token.servable(now)
            entry.token = token
            entry.refresh_failures = 0
            entry.retry_after = None
            entry.refresh_at = refresh.refresh_due(
                token.issued_at, token.expires_at, self.fleet.rand(), first=not replaces
            )
            self.backoff.succeeded(host)
            self.fleet.landed(entry.pair, token, now)
        elif error is not None:
            entry.retry_after = error.retry_after if isinstance(error, MendaCloudAPIError) else None
            if flight.background:
                entry.refresh_failures += 1
                if refresh.host_is_failing(error):
                    self.backoff.failed(host, now, self.fleet.rand(), entry.retry_after)
        self._after_flight(entry)

    def _after_flight(self, entry: Entry) -> None:
        if self.entries.get(entry.domain) is not entry or entry.flight is not None:
            return
        now = self.machine.wall()
        token = entry.token if entry.token is not None and entry.token.servable(now) else None
        if token is None:
            wait = refresh.keep_place_delay(
                entry.retry_after, entry.refresh_failures + 1, self.fleet.rand()
            )
            if wait is None:
                self._drop(entry)
                return
            entry.refresh_at = now + wait
        elif entry.refresh_failures:
            left = token.remaining(now) - token.min_remaining()
            delay = refresh.retry_delay(
                entry.refresh_failures,
                self.fleet.rand(),
                time_left=left,
                retry_after=entry.retry_after,
            )
            entry.refresh_at = now + delay
        self._arm(entry)

    # -- the timer ------------------------------------------------------------------------

    def _arm(self, entry: Entry) -> None:
        when = refresh.next_wakeup(entry.refresh_at, entry.last_used, self.idle_timeout)
        self.schedule.arm(entry.domain, when)
        self._kick(when)

    def _kick(self, when: float) -> None:
        if self._timer_at is None or when < self._timer_at:
            self._timer_at = when
            self.fleet.loop.at(when - self.fleet.t0, self._timer, when)

    def _timer(self, when: float) -> None:
        if when != self._timer_at:
            return  # superseded by an earlier wake-up
        self._timer_at = None
        for domain in self.schedule.pop_due(self.machine.wall()):
            entry = self.entries.get(domain)
            if entry is not None:
                self._wake(entry)
        next_at = self.schedule.next_at()
        if next_at is not None:
            self._kick(next_at)

    def _wake(self, entry: Entry) -> None:
        now = self.machine.wall()
        if refresh.is_idle(now, entry.last_used, self.idle_timeout):
            self._drop(entry)
            return
        if entry.refresh_at is not None and now >= entry.refresh_at:
            if entry.flight is None:
                wait = self.backoff.wait(self.identity.host, now)
                if wait > 0:
                    entry.refresh_at = now + wait
                    self._arm(entry)
                    return
                entry.refresh_at = None
                self._start(entry, Deadline(DEFAULT_CEILING, clock=self.fleet.loop.clock), True)
            return
        self._arm(entry)

    def _drop(self, entry: Entry) -> None:
        self.schedule.disarm(entry.domain)
        if self.entries.get(entry.domain) is entry:
            del self.entries[entry.domain]
