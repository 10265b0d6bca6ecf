"""Figure 12: a signed-in developer's working week, on a virtual clock, with the real code.

One developer signs in once (``menda auth login``: a 1-hour access token and a 30-day
refresh token, written into the real token cache file of a temporary home) and works
09:00-18:00 Monday to Friday, asking for a CodeArtifact token at realistic moments: a
burst when the day starts (``uv lock``), then every 20-40 minutes, with a lunch gap. Each
ask is what one ``keyring get`` does:

- ``daemon``: the real daemon (``Broker``, ``Prewarmer`` with its state file,
  ``CredServer`` answering a ``get`` line; no socket) left running all week;
- ``daemon_per_login``: the same daemon started when the developer signs on each morning
  and stopped each evening (its pre-warm state file carried across, as on disk);
- ``in_process``: ``MENDA_CREDD=off``, one ``InProcessResolver`` per ask (a fresh
  process: no memory between asks, the token cache file shared).

menda-cloud is in memory: the grants of ``tests.fakes.menda_cloud.FakeMendaCloud``
(refresh with rotation and reuse detection, the registry exchange with 12-hour tokens)
without its HTTP server, each call taking ``LATENCY`` virtual seconds. Two weeks are run:
the first teaches pre-warm the developer's pattern from an empty state, the second is
the one measured.

``python -m benchmarks.workweek [--seed N] [--no-prewarm] [--refresh-lifetime S]`` prints
one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from menda_keyring.cloud_protocol import REFRESH_WHAT, HttpRequest, HttpResponse
from menda_keyring.urls import RegistryTarget
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import write_profile, write_user_login
from tests.support.virtual_clock import run_virtual

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
HOST = "https://menda.invalid"  # never contacted: menda-cloud is in memory
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
SERVICE = (
    "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/pypi-store/simple/"
)
#: One menda-cloud round trip, in virtual seconds.
LATENCY = 0.25
USER_TOKEN_LIFETIME = 3600
REFRESH_TOKEN_LIFETIME = 30 * 86400
REGISTRY_TOKEN_LIFETIME = 12 * 3600
#: Monday 4 January 2027, local midnight: no daylight-saving change in the weeks run.
FIRST_MONDAY = datetime.datetime(2027, 1, 4).timestamp()
#: Week 0 teaches pre-warm; week 1 is measured.
WEEKS = 2
MODES = ("daemon", "daemon_per_login", "in_process")


# -- the developer ------------------------------------------------------------------------


@dataclass(frozen=True)
class Day:
    """One working day: when the developer signs on, asks, and signs off."""

    signs_on: float
    asks: tuple[float, ...]
    signs_off: float


def working_day(rng: random.Random, midnight: float) -> Day:
    """09:00 give or take (a burst of 4 asks: one ``uv lock``), then every 20-40 min until
    18:00, none over a lunch of 45-75 min from about 12:30."""
    first = midnight + 9 * HOUR + rng.uniform(-5, 10) * MINUTE
    asks = [first]
    for _ in range(3):
        asks.append(asks[-1] + rng.uniform(0.3, 1.5))
    lunch = midnight + rng.uniform(12.25, 12.75) * HOUR
    back = lunch + rng.uniform(45, 75) * MINUTE
    t = asks[-1]
    while True:
        t += rng.uniform(20, 40) * MINUTE
        if lunch <= t < back:
            t = back + rng.uniform(0, 5) * MINUTE
        if t >= midnight + 18 * HOUR:
            break
        asks.append(t)
    signs_on = first - rng.uniform(2, 15) * MINUTE
    return Day(signs_on, tuple(asks), asks[-1] + rng.uniform(5, 30) * MINUTE)


def schedule(rng: random.Random, weeks: int = WEEKS, start: float = FIRST_MONDAY) -> list[Day]:
    """Monday to Friday of ``weeks`` weeks from the local midnight ``start`` (a Monday)."""
    days = []
    for n in range(weeks * 7):
        if n % 7 < 5:
            midnight = datetime.datetime.fromtimestamp(start) + datetime.timedelta(days=n)
            days.append(working_day(rng, midnight.timestamp()))
    return days


# -- menda-cloud in memory ----------------------------------------------------------------


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


@dataclass
class Call:
    at: float
    kind: str  # "refresh", "registry" or "client_credentials"
    status: int


class MemoryCloud:
    """FakeMendaCloud's grants without its HTTP server, on the simulation's clock; every
    call recorded. ``reused``: refresh tokens presented after they were used (the fake then
    revokes the whole login, as real servers do)."""

    def __init__(self, clock: Callable[[], float], refresh_lifetime: int) -> None:
        self.clock = clock
        self.fake = FakeMendaCloud(
            user_token_lifetime=USER_TOKEN_LIFETIME,
            refresh_token_lifetime=refresh_lifetime,
            registry_token_lifetime=REGISTRY_TOKEN_LIFETIME,
            clock=clock,
        )
        self.calls: list[Call] = []
        self.reused = 0
        self.in_flight = 0

    def answer(self, request: HttpRequest) -> HttpResponse:
        if request.what == REFRESH_WHAT:
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
            token = form.get("refresh_token", "")
            self.reused += self.fake.refresh_token_state(token) == "used"
            code, answer = self.fake.refresh_login(token, form.get("client_id", ""))
            response = _json(200, answer) if code is None else _json(400, {"error": code})
            kind = "refresh"
        elif request.what == "registry/token":
            bearer = request.headers["Authorization"].partition(" ")[2]
            identity = self.fake.access_token_identity(bearer)
            if identity is None:
                response = _json(401, {"error": "invalid_token", "message": "expired"})
            else:
                body = json.loads(request.body)
                status, answer = self.fake.registry_grant(
                    identity, body["domain"], body["domain_owner"], body["region"]
                )
                response = _json(status, answer)
            kind = "registry"
        else:  # client credentials: no machine client in this week
            response = _json(401, {"error": "invalid_client"})
            kind = "client_credentials"
        self.calls.append(Call(self.clock(), kind, response.status))
        return response

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        """The daemon's transport: a round trip of LATENCY on the virtual loop."""
        self.in_flight += 1
        try:
            await asyncio.sleep(LATENCY)
            return self.answer(request)
        finally:
            self.in_flight -= 1

    def count(self, since: float, until: float) -> dict[str, int]:
        """Successful calls of each kind in ``[since, until)``, and failed ones."""
        counts: Counter[str] = Counter()
        for call in self.calls:
            if since <= call.at < until:
                counts[call.kind if call.status == 200 else f"{call.kind}_failed"] += 1
        return dict(counts)


class ManualClock:
    """The in-process case's clock: set to each ask, moved on by each round trip."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# -- what one ask found -------------------------------------------------------------------


@dataclass
class Ask:
    at: float
    first_of_day: bool
    waited: bool  # for menda-cloud (an exchange or a refresh on its path)
    seconds: float  # virtual
    error: str | None = None  # the error's kind


@dataclass
class Run:
    asks: list[Ask] = field(default_factory=list)
    #: (daemon start, virtual seconds until the remembered pair was servable) per start.
    warm_after: list[tuple[float, float | None]] = field(default_factory=list)


def sign_in(home: Path, cloud: MemoryCloud) -> None:
    """``menda auth configure`` (a u2m profile) and ``menda auth login``, as they write."""
    write_profile(home, f"[default]\nhost = {HOST}\n")
    login = cloud.fake.issue_user_login("alice", lifetime=USER_TOKEN_LIFETIME)
    write_user_login(home, "default", login, HOST)


def firsts(days: Iterable[Day]) -> set[float]:
    return {day.asks[0] for day in days}


# -- the daemon ---------------------------------------------------------------------------


class Daemon:
    """The daemon's parts as ``menda_credd.daemon`` assembles them, minus the socket."""

    def __init__(self, cloud: MemoryCloud, home: Path, clock: Callable[[], float], prewarm: bool):
        self.cloud, self.home, self.clock, self.prewarm = cloud, home, clock, prewarm
        self.env = {"HOME": str(home)}

    @contextlib.asynccontextmanager
    async def running(self, rng: random.Random) -> AsyncIterator[Daemon]:
        from menda_credd.broker import Broker
        from menda_credd.prewarmer import Prewarmer
        from menda_credd.server import CredServer
        from menda_keyring.paths import prewarm_state_path

        async with contextlib.AsyncExitStack() as stack:
            self.broker = await stack.enter_async_context(
                Broker(self.cloud.send, clock=self.clock, rand=rng.random)
            )
            prewarmer = None
            if self.prewarm:
                state = prewarm_state_path(self.env)
                prewarmer = await stack.enter_async_context(Prewarmer(self.broker, state).running())
            self.server = CredServer(self.broker, "(no socket)", prewarmer=prewarmer)
            yield self

    async def ask(self, first_of_day: bool) -> Ask:
        from menda_keyring.daemon_protocol import ErrorReply, GetRequest, encode_request

        line = encode_request(GetRequest(SERVICE, None, self.env))
        started, waits = self.clock(), self.broker.counters["waits"]
        reply = await self.server.dispatch(line)
        seconds = self.clock() - started
        waited = self.broker.counters["waits"] > waits or seconds >= LATENCY
        error = reply.error.kind if isinstance(reply, ErrorReply) else None
        return Ask(started, first_of_day, waited, round(seconds, 3), error)

    def warm(self) -> bool:
        now = self.clock()
        entries = list(self.broker.entries.values())
        return bool(entries) and all(e.servable_token(now) is not None for e in entries)


async def _sleep_until(clock: Callable[[], float], when: float) -> None:
    await asyncio.sleep(max(when - clock(), 0.0))


async def _time_to_warm(daemon: Daemon, started: float, run: Run, until: float) -> None:
    """Poll for a warm daemon: every 10 ms of virtual time at first, then every second."""
    while not daemon.warm() and daemon.clock() < until:
        await asyncio.sleep(0.01 if daemon.clock() - started < 10 else 1.0)
    run.warm_after.append((started, daemon.clock() - started if daemon.warm() else None))


def run_daemon(
    days: list[Day], home: Path, restart: bool, prewarm: bool, seed: int, refresh_lifetime: int
) -> tuple[Run, MemoryCloud]:
    """A daemon left running from the first sign-on to the end, or one per working day."""
    rng = random.Random(seed)
    first = firsts(days)
    out: dict[str, MemoryCloud] = {}

    async def main(clock: Callable[[], float]) -> Run:
        cloud = out["cloud"] = MemoryCloud(clock, refresh_lifetime)
        sign_in(home, cloud)
        run = Run()
        daemon = Daemon(cloud, home, clock, prewarm)

        async def work(day: Day) -> None:
            for t in day.asks:
                await _sleep_until(clock, t)
                run.asks.append(await daemon.ask(t in first))

        if not restart:
            async with daemon.running(rng):
                for day in days:
                    await work(day)
                await _sleep_until(clock, days[-1].signs_off + 2 * DAY)  # the weekend
            return run
        for day in days:
            await _sleep_until(clock, day.signs_on)
            async with daemon.running(rng):
                watcher = asyncio.ensure_future(
                    _time_to_warm(daemon, clock(), run, day.asks[0] + HOUR)
                )
                await work(day)
                await watcher
                await _sleep_until(clock, day.signs_off)
        return run

    return run_virtual(main, start=days[0].signs_on - HOUR), out["cloud"]


def run_in_process(days: list[Day], home: Path, refresh_lifetime: int) -> tuple[Run, MemoryCloud]:
    """Every ask a fresh ``keyring get`` with ``MENDA_CREDD=off``."""
    from menda_keyring.errors import MendaError
    from menda_keyring.in_process import InProcessResolver

    clock = ManualClock(days[0].signs_on - HOUR)
    cloud = MemoryCloud(clock, refresh_lifetime)

    def send(request: HttpRequest, timeout: float) -> HttpResponse:
        clock.sleep(LATENCY)
        return cloud.answer(request)

    sign_in(home, cloud)
    run = Run()
    first = firsts(days)
    env = {"HOME": str(home), "MENDA_CREDD": "off"}
    for day in days:
        for t in day.asks:
            clock.now = max(clock.now, t)
            started, calls = clock.now, len(cloud.calls)
            error = None
            try:
                InProcessResolver(env, send=send, clock=clock, sleep=clock.sleep).resolve(TARGET)
            except MendaError as exc:
                error = exc.kind
            waited = len(cloud.calls) > calls
            run.asks.append(Ask(started, t in first, waited, round(clock.now - started, 3), error))
    return run, cloud


# -- the figure ---------------------------------------------------------------------------


def summarize(run: Run, cloud: MemoryCloud, since: float, until: float) -> dict[str, Any]:
    """What the asks of ``[since, until)`` found, and what menda-cloud was asked meanwhile."""
    asks = [a for a in run.asks if since <= a.at < until]
    first = [a for a in asks if a.first_of_day]
    from menda_keyring.errors import NoCachedLoginError

    errors = Counter(a.error for a in asks if a.error is not None)
    no_login = errors.get(NoCachedLoginError.kind, 0)
    calls = cloud.count(since, until)
    out: dict[str, Any] = {
        "asks": len(asks),
        "no_cached_login_errors": no_login,
        "other_errors": sum(errors.values()) - no_login,
        "error_kinds": dict(errors),
        "refresh_calls": calls.get("refresh", 0),
        "registry_exchanges": calls.get("registry", 0),
        "failed_calls": {k: v for k, v in calls.items() if k.endswith("_failed")},
        "asks_that_waited": sum(a.waited for a in asks),
        "first_asks_of_the_day": len(first),
        "first_asks_that_waited": sum(a.waited for a in first),
        "first_ask_wait_s_max": max((a.seconds for a in first if a.waited), default=0.0),
        "working_days": len(first),
    }
    warm = [w for s, w in run.warm_after if since <= s < until]
    if warm:
        known = [w for w in warm if w is not None]
        out["daemon_starts"] = len(warm)
        out["start_to_warm_s_median"] = round(statistics.median(known), 3) if known else None
        out["start_to_warm_s_max"] = round(max(known), 3) if known else None
        out["starts_never_warm"] = len(warm) - len(known)
    return out


def run_all(
    seed: int = 7, prewarm: bool = True, refresh_lifetime: int = REFRESH_TOKEN_LIFETIME
) -> dict[str, Any]:
    """Every mode over the same two weeks (the same developer, the same asks)."""
    logging.getLogger("menda_credd").setLevel(logging.CRITICAL)
    days = schedule(random.Random(seed))
    measured = FIRST_MONDAY + WEEK
    result: dict[str, Any] = {
        "method": "the real Broker, Prewarmer and CredServer (a get line, no socket) or "
        "InProcessResolver on a virtual clock; the real token cache file of a u2m login in a "
        "temporary home; menda-cloud in memory (FakeMendaCloud's grants, "
        f"{LATENCY} s per call); week 1 teaches pre-warm from an empty state, week 2 is "
        "measured",
        "prewarm": prewarm,
        "seed": seed,
        "lifetimes_s": {
            "user_access_token": USER_TOKEN_LIFETIME,
            "refresh_token": refresh_lifetime,
            "registry_token": REGISTRY_TOKEN_LIFETIME,
        },
    }
    wall = time.perf_counter()
    for mode in MODES:
        with tempfile.TemporaryDirectory(prefix=f"workweek-{mode}-") as tmp:
            home = Path(tmp)
            if mode == "in_process":
                run, cloud = run_in_process(days, home, refresh_lifetime)
            else:
                restart = mode == "daemon_per_login"
                run, cloud = run_daemon(days, home, restart, prewarm, seed, refresh_lifetime)
        result[mode] = {
            "week": summarize(run, cloud, measured, measured + WEEK),
            "learning_week": summarize(run, cloud, FIRST_MONDAY - DAY, measured),
            "refresh_tokens_reused": cloud.reused,
        }
    result["real_seconds"] = round(time.perf_counter() - wall, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-prewarm", action="store_true", help="the daemons without pre-warm")
    parser.add_argument(
        "--refresh-lifetime", type=int, default=REFRESH_TOKEN_LIFETIME, help="seconds"
    )
    args = parser.parse_args()
    print(json.dumps(run_all(args.seed, not args.no_prewarm, args.refresh_lifetime)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
