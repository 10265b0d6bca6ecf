"""Pre-warm in the daemon: remember what is asked for, and exchange it before it is asked.

The decisions are :class:`~menda_credd.prewarm.PrewarmMemory`'s; this module is the edge
that runs them on the daemon's event loop (anyio): it loads the state file in a worker
thread when the daemon starts, warms every remembered pair then, wakes when a pair is
expected again (an entry dropped for idleness overnight, say), and writes the file in a
worker thread at most once per ``debounce`` seconds, and once more at shutdown.

Every exchange goes through :meth:`Broker.prewarm`, the broker's normal flight, so a
pre-warm never makes a second exchange for a pair a request is already fetching, and a
request arriving meanwhile simply waits on the pre-warm's flight. An identity whose
configuration no longer resolves, or whose login is over, is forgotten quietly.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio

from menda_keyring.errors import ConfigError, MendaCloudAPIError, MendaError, NoCachedLoginError
from menda_keyring.identity import ENV_PROFILE, Identity
from menda_keyring.retry import DEFAULT_CEILING, Deadline
from menda_keyring.urls import RegistryTarget

from . import prewarm_file
from .broker import Broker
from .entries import describe
from .identity_memo import IdentityCache
from .prewarm import PrewarmMemory, Record, Subject

log = logging.getLogger("menda_credd.prewarm")

#: The state file is written at most this often (and at shutdown).
DEBOUNCE = 30.0
#: Pre-warms at once (each is one flight; requests keep the rest of the upstream slots).
CONCURRENCY = 2
#: The timer looks at the wall clock at least this often: a suspended laptop's monotonic
#: clock stands still, its wall clock does not.
MAX_NAP = 300.0
#: menda-cloud answers that mean the pair cannot work as configured: forget it.
HOPELESS = frozenset({400, 401, 403, 404})


def subject_of(identity: Identity, home: Path) -> Subject:
    if identity.source == "env":
        return Subject("env", str(home), identity.client_id or "", identity.host)
    return Subject("profile", str(home), identity.profile or "", "")


class Prewarmer:
    """Use as ``async with Prewarmer(broker, path).running() as prewarmer``.

    ``path`` None: memory only, no state file.
    """

    def __init__(
        self,
        broker: Broker,
        path: Path | None,
        memory: PrewarmMemory | None = None,
        identities: IdentityCache | None = None,
        clock: Callable[[], float] | None = None,
        debounce: float = DEBOUNCE,
    ) -> None:
        self.broker = broker
        self.path = path
        self.memory = memory or PrewarmMemory()
        self.identities = identities or IdentityCache()
        self.clock = clock or broker.clock
        self.debounce = debounce
        self.file_problem: str | None = None
        self.started_at: float | None = None
        self.warmed_at_start = 0
        self._limiter = anyio.CapacityLimiter(CONCURRENCY)
        self._dirty = anyio.Event()
        self._last_save_error: str | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Prewarmer]:
        """Load the state file, warm and write in the background; save once more at exit."""
        if self.path is not None:
            records, problem = await anyio.to_thread.run_sync(prewarm_file.load, self.path)
            if problem is not None:
                self.file_problem = problem
                log.warning("%s", problem)
            self.memory.load(records, self.clock())
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._run)
                if self.path is not None:
                    group.start_soon(self._saver)
                yield self
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.save()

    # -- what requests teach ---------------------------------------------------------------

    def asked(self, identity: Identity, home: Path, target: RegistryTarget) -> None:
        """A request for ``(identity, target)`` (the server's warm path: no I/O here)."""
        held = (identity, home) if identity.source == "env" else None
        subject = subject_of(identity, home)
        if self.memory.asked(subject, target, identity.label, self.clock(), held):
            self._dirty.set()

    # -- warming ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """Warm at start, then whenever a pair is due; an internal error stops pre-warm only."""
        try:
            await self._warm_forever()
        except Exception:
            log.exception("pre-warm stopped after an internal error; the daemon serves on")

    async def _warm_forever(self) -> None:
        self.started_at = self.clock()
        start = self.memory.at_start(self.started_at)
        self.warmed_at_start = await self._warm_all(start)
        if start:
            log.info("pre-warmed %d of %d remembered pairs", self.warmed_at_start, len(start))
        while True:
            due = self.memory.due(self.clock())
            if due:
                await self._warm_all(due)
            next_at = self.memory.next_due(self.clock())
            nap = MAX_NAP if next_at is None else min(max(next_at - self.clock(), 0.0), MAX_NAP)
            await anyio.sleep(max(nap, 0.001))

    async def _warm_all(self, records: list[Record]) -> int:
        """Warm ``records`` (at most CONCURRENCY at once); how many made an exchange."""
        made = [0]

        async def one(record: Record) -> None:
            async with self._limiter:
                if await self.warm(record):
                    made[0] += 1

        async with anyio.create_task_group() as group:
            for record in records:
                group.start_soon(one, record)
        if any(r.key not in self.memory.records for r in records):
            self._dirty.set()  # something was forgotten
        return made[0]

    async def warm(self, record: Record) -> bool:
        """One pre-warm; True when it brought a token. Errors are decided here, never raised."""
        try:
            identity, home = await self._resolve(record)
            scope = ""
            if identity.auth_type == "u2m":
                deadline = Deadline(DEFAULT_CEILING, clock=anyio.current_time)
                scope = await self.broker.user_scope(identity, home, deadline)
            flight = self.broker.prewarm(identity, record.target, home, scope)
            if flight is None:
                return False  # a token in memory, or a request fetching it already
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.result is None:
                return False  # stopped (shutdown)
        except (ConfigError, NoCachedLoginError) as exc:
            self._forget(record, exc.kind)
            return False
        except MendaCloudAPIError as exc:
            if exc.status_code in HOPELESS:
                self._forget(record, f"{exc.kind} (HTTP {exc.status_code})")
            else:
                self._not_now(record, exc)
            return False
        except MendaError as exc:  # busy, a timeout, menda-cloud in trouble: not now
            self._not_now(record, exc)
            return False
        self.memory.prewarmed(record.key, self.clock())
        return True

    async def _resolve(self, record: Record) -> tuple[Identity, Path]:
        """The identity as a request would resolve it now; ``ConfigError`` when it cannot."""
        subject = record.subject
        if subject.source == "env":
            if record.held is None:
                raise ConfigError("the environment of this identity is not known any more")
            identity, home = record.held
            return identity, home
        home = Path(subject.home)
        identity = await self.identities.resolve({ENV_PROFILE: subject.name}, home)
        return identity, home

    def _forget(self, record: Record, why: str) -> None:
        self.memory.forget(record.key)
        self.broker.count("prewarm_forgotten")
        log.info("forgot %s, domain %s (%s)", record.label, describe(record.target), why)

    def _not_now(self, record: Record, exc: MendaError) -> None:
        log.info(
            "pre-warm of %s, domain %s failed (%s); the first request will exchange",
            record.label,
            describe(record.target),
            exc.kind,
        )

    # -- the state file ----------------------------------------------------------------------

    async def _saver(self) -> None:
        while True:
            await self._dirty.wait()
            await anyio.sleep(self.debounce)
            self._dirty = anyio.Event()
            await self.save()

    async def save(self) -> None:
        """Write the memory when it changed (in a worker thread); a failure is a warning."""
        if self.path is None or not self.memory.dirty:
            return
        data = self.memory.encode()
        self.memory.saved()
        try:
            await anyio.to_thread.run_sync(prewarm_file.save, self.path, data)
        except OSError as exc:
            self.memory.dirty = True
            problem = prewarm_file.describe_error(exc)
            if problem != self._last_save_error:
                log.warning("cannot write the pre-warm state file %s: %s", self.path, problem)
            self._last_save_error = problem
            return
        self._last_save_error = None

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "enabled": True,
            "state_file": None if self.path is None else str(self.path),
            "state_file_problem": self.file_problem or self._last_save_error,
            "remembered": len(self.memory),
            "warmed_at_start": self.warmed_at_start,
            "next_at": self.memory.next_due(now),
        }


def disabled_status() -> dict[str, Any]:
    return {"enabled": False}
