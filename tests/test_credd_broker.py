"""The Broker in process against an in-memory menda-cloud, on a virtual clock.

What is checked here is the daemon's policy: how many HTTP tries each flight makes (a
background refresh one per attempt, a waiting request every try, also when it joins a
refresh in flight), one flight per key, refresh ahead of expiry, idle eviction, and the
bounds (entries, flights, upstream slots per host, abandoned flights cancelled).
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

import anyio
import pytest

from menda_credd.broker import Broker
from menda_credd.refresh import RefreshSchedule
from menda_keyring.cloud_protocol import HttpRequest, HttpResponse
from menda_keyring.errors import DaemonBusy, MendaCloudAPIError, MendaError, ResolutionTimeoutError
from menda_keyring.identity import Identity, resolve_identity
from menda_keyring.retry import Deadline, RetryPolicy
from menda_keyring.urls import RegistryTarget
from tests.support.virtual_clock import run_virtual

TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
#: Four tries, with retry waits short enough for a unit test.
QUICK = RetryPolicy(max_attempts=4, base=0.01, cap=0.02)


class Upstream:
    """menda-cloud's two endpoints in memory, on the test's clock.

    ``fail[what]`` answers 503 that many times; ``gate[what]``, when set, holds every call
    of that endpoint until the event is set; ``hosts`` counts calls per menda-cloud host.
    """

    def __init__(
        self, clock: Callable[[], float], registry_lifetime: int = 3600, access_lifetime: int = 3600
    ) -> None:
        self.clock = clock
        self.registry_lifetime = registry_lifetime
        self.access_lifetime = access_lifetime
        self.calls: Counter[str] = Counter()
        self.fail: Counter[str] = Counter()
        #: Answer 429 with ``Retry-After: retry_after`` that many times.
        self.limited: Counter[str] = Counter()
        self.retry_after = 60
        self.gate: dict[str, anyio.Event] = {}
        self.cancelled = 0

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self.calls[request.what] += 1
        gate = self.gate.get(request.what)
        if gate is not None:
            try:
                await gate.wait()
            except BaseException:
                self.cancelled += 1
                raise
        if self.fail[request.what] > 0:
            self.fail[request.what] -= 1
            return _json(503, {"error": "service_unavailable", "message": "injected"})
        if self.limited[request.what] > 0:
            self.limited[request.what] -= 1
            return HttpResponse(
                429,
                {"content-type": "application/json", "retry-after": str(self.retry_after)},
                json.dumps({"error": "rate_limited", "message": "injected"}).encode(),
            )
        if request.what == "oauth2/token":
            token = "mat_" + secrets.token_urlsafe(8)
            return _json(200, {"access_token": token, "expires_in": self.access_lifetime})
        expires = math.floor(self.clock()) + self.registry_lifetime
        return _json(
            200,
            {
                "token": "caat_" + secrets.token_urlsafe(8),
                "expiration": datetime.fromtimestamp(expires, tz=timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "username": "aws",
            },
        )


def _json(status: int, body: dict) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


def _identity(home: Path, client: str = "c", host: str = "http://127.0.0.1:9") -> Identity:
    env = {"MENDA_CLIENT_ID": client, "MENDA_CLIENT_SECRET": "s", "MENDA_HOST": host}
    return resolve_identity(env, home)


def _deadline(seconds: float = 30.0) -> Deadline:
    return Deadline(seconds, clock=anyio.current_time)


async def _until(condition: Callable[[], bool], step: float = 0.5, limit: float = 3600) -> None:
    """Let virtual time pass until ``condition`` holds (bounded)."""
    waited = 0.0
    while not condition():
        assert waited < limit, "condition not reached in virtual time"
        await anyio.sleep(step)
        waited += step


@pytest.mark.parametrize("failing", ["registry/token", "oauth2/token"])
def test_a_background_refresh_makes_one_http_try_per_attempt(tmp_path: Path, failing: str) -> None:
    async def main(clock: Callable[[], float]) -> None:
        # Access tokens outlive the refresh point unless the OAuth endpoint is under test.
        upstream = Upstream(clock, access_lifetime=600 if failing == "oauth2/token" else 7200)
        # rand 0.99: the first refresh at 84 % of the lifetime, after the access token's end.
        async with Broker(upstream.send, clock=clock, policy=QUICK, rand=lambda: 0.99) as broker:
            identity = _identity(tmp_path)
            first = await broker.get(identity, TARGET, tmp_path, _deadline())
            before = upstream.calls[failing]
            upstream.fail[failing] = 10_000  # menda-cloud is down from now on
            await _until(lambda: broker.counters["refresh_failures"] >= 3)
            # Every failed attempt was one HTTP try, and requests are still served.
            assert upstream.calls[failing] - before == broker.counters["refresh_failures"]
            entry = broker.serve_cached(identity, TARGET)
            assert entry is not None and entry.token is first
            upstream.fail.clear()
            await _until(lambda: broker.counters["refreshes"] == 1)
            entry = broker.serve_cached(identity, TARGET)
            assert entry is not None and entry.token is not None
            assert entry.token.token != first.token

    run_virtual(main)


@pytest.mark.parametrize("failing", ["registry/token", "oauth2/token"])
def test_a_request_in_the_foreground_keeps_every_try(tmp_path: Path, failing: str) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.fail[failing] = 3  # three 503s, then an answer: the fourth try succeeds
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            token = await broker.get(_identity(tmp_path), TARGET, tmp_path, _deadline())
            assert token.token.startswith("caat_")
            assert upstream.calls[failing] == 4

    run_virtual(main)


def test_a_request_joining_a_refresh_in_flight_lifts_it_to_every_try(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock, registry_lifetime=100)
        # rand 0.95: the first token's refresh comes at 76 % of its lifetime (first_share),
        # late enough that the held try is still inside its 30 s ceiling when released.
        async with Broker(upstream.send, clock=clock, policy=QUICK, rand=lambda: 0.95) as broker:
            identity = _identity(tmp_path)
            first = await broker.get(identity, TARGET, tmp_path, _deadline())
            entry = broker.entries[(identity.fingerprint, TARGET)]
            upstream.gate["registry/token"] = gate = anyio.Event()
            await _until(lambda: entry.flight is not None, step=0.25)  # the refresh, held
            await _until(lambda: not first.servable(clock()), step=0.25)
            upstream.fail["registry/token"] = 2  # the held try and one more fail

            async def request() -> None:
                token = await broker.get(identity, TARGET, tmp_path, _deadline())
                assert token.token != first.token

            async with anyio.create_task_group() as tg:
                tg.start_soon(request)
                await _until(lambda: broker.counters["waits"] == 2, step=0.01)
                gate.set()
            # Initial exchange 1, then the refresh: 503 (its one background try), and,
            # once a request waits, the normal policy: 503, then 200.
            assert upstream.calls["registry/token"] == 4
            assert broker.counters["refreshes"] == 1

    run_virtual(main)


def test_a_rate_limit_beyond_the_ceiling_keeps_the_entry_s_place(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.limited["registry/token"] = 1
        upstream.retry_after = 120  # a fleet's backlog: far beyond a caller's 30 s
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            identity = _identity(tmp_path)
            with pytest.raises(MendaCloudAPIError) as refused:
                await broker.get(identity, TARGET, tmp_path, _deadline())
            assert refused.value.retry_after == 120 and refused.value.transient
            assert upstream.calls["registry/token"] == 1
            start = clock()
            # No caller waits, yet the daemon tries once more, when menda-cloud said ...
            await _until(lambda: upstream.calls["registry/token"] == 2, step=1, limit=300)
            assert 120 <= clock() - start <= 120 + 2
            entry = broker.serve_cached(identity, TARGET)
            assert entry is not None
            # ... so the caller's next try is answered from memory.
            await broker.get(identity, TARGET, tmp_path, _deadline())
            assert upstream.calls["registry/token"] == 2

    run_virtual(main)


def test_a_refusal_without_retry_after_drops_the_entry_as_before(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.fail["registry/token"] = 4  # every foreground try: 503, no Retry-After
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            with pytest.raises(MendaCloudAPIError):
                await broker.get(_identity(tmp_path), TARGET, tmp_path, _deadline())
            assert not broker.entries
            await anyio.sleep(600)
            assert upstream.calls["registry/token"] == 4

    run_virtual(main)


def test_refreshes_to_a_failing_host_take_turns(tmp_path: Path) -> None:
    """Three domains of one daemon during an outage: one backoff, not three."""

    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock, registry_lifetime=3600, access_lifetime=7 * 3600)
        # rand 0.999: all three first refreshes at about 85 % of the lifetime, together.
        async with Broker(upstream.send, clock=clock, policy=QUICK, rand=lambda: 0.999) as broker:
            identity = _identity(tmp_path)
            targets = [RegistryTarget(f"d{n}", "058264169513", "eu-west-1") for n in range(3)]
            for target in targets:
                await broker.get(identity, target, tmp_path, _deadline())
            upstream.fail["registry/token"] = 10_000
            await _until(lambda: broker.counters["refresh_failures"] >= 1, step=1)
            failed_at, calls = clock(), upstream.calls["registry/token"]
            await anyio.sleep(300)
            # One probe at a time, spaced by the host's backoff (rand 0.999: about 1, 2, 4,
            # 8, 16, 32, 60 ... s): some nine tries in five minutes, where three entries
            # on their own would make three times as many.
            tries = upstream.calls["registry/token"] - calls
            assert 6 <= tries <= 12, tries
            upstream.fail.clear()
            await _until(lambda: broker.counters["refreshes"] == 3, step=1, limit=120)
            assert clock() - failed_at <= 300 + 62 + 3

    run_virtual(main)


def test_a_hundred_parallel_requests_cost_one_exchange(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            identity = _identity(tmp_path)
            tokens: set[str] = set()

            async def request() -> None:
                tokens.add((await broker.get(identity, TARGET, tmp_path, _deadline())).token)

            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(request)
            assert len(tokens) == 1
            assert upstream.calls == {"oauth2/token": 1, "registry/token": 1}

    run_virtual(main)


def test_two_domains_of_one_machine_identity_share_one_oauth_exchange(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        other = RegistryTarget("other-domain", "058264169513", "eu-west-1")
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            identity = _identity(tmp_path)
            async with anyio.create_task_group() as tg:
                for target in (TARGET, other):
                    tg.start_soon(broker.get, identity, target, tmp_path, _deadline())
            # The second flight waited on the cache lock and read what the first wrote.
            assert upstream.calls == {"oauth2/token": 1, "registry/token": 2}

    run_virtual(main)


def test_a_token_in_use_is_refreshed_ahead_and_an_idle_one_dropped(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock, registry_lifetime=3600, access_lifetime=7200)
        async with Broker(
            upstream.send, clock=clock, policy=QUICK, idle_timeout=5400, rand=lambda: 0.5
        ) as broker:
            identity = _identity(tmp_path)
            start = clock()
            await broker.get(identity, TARGET, tmp_path, _deadline())
            await _until(lambda: broker.counters["refreshes"] == 1, step=10)
            # rand 0.5: a first token at 40 % of its lifetime (refresh.first_share spreads
            # the first refreshes over the whole cycle), give or take the polling step ...
            assert 0.40 * 3600 - 1 <= clock() - start <= 0.40 * 3600 + 11
            refreshed = clock()
            await _until(lambda: broker.counters["refreshes"] == 2, step=10)
            # ... and the ones after it at 80 %.
            assert 0.80 * 3600 - 1 <= clock() - refreshed <= 0.80 * 3600 + 11
            await _until(lambda: not broker.entries, step=60, limit=3 * 3600)
            assert broker.counters["entries_dropped"] == 1
            assert 5400 <= clock() - start <= 5400 + 61

    run_virtual(main)


def test_a_flight_nobody_waits_for_is_cancelled_and_frees_its_slot(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.gate["oauth2/token"] = anyio.Event()  # menda-cloud never answers
        async with Broker(upstream.send, clock=clock, policy=QUICK) as broker:
            with pytest.raises(ResolutionTimeoutError):
                await broker.get(_identity(tmp_path), TARGET, tmp_path, _deadline(2.0))
            await _until(lambda: upstream.cancelled == 1, step=0.01, limit=5)
            assert broker.counters["flights_cancelled"] == 1
            assert broker.flights == 0
            assert broker.effects.upstream.borrowed_tokens == 0

    run_virtual(main)


def test_a_slow_host_cannot_take_every_upstream_slot(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        slow = Upstream(clock)
        slow.gate["oauth2/token"] = anyio.Event()
        fast = Upstream(clock)

        async def send(request: HttpRequest, timeout: float) -> HttpResponse:
            up = slow if "slow.example" in request.url else fast
            return await up.send(request, timeout)

        async with Broker(send, clock=clock, policy=QUICK) as broker:
            async with anyio.create_task_group() as tg:
                for n in range(20):  # each with its own home, so no token cache lock is shared
                    home = tmp_path / f"home-{n}"
                    identity = _identity(home, f"slow-{n}", "https://slow.example")
                    tg.start_soon(_ignore_errors, broker.get(identity, TARGET, home, _deadline()))
                await _until(lambda: slow.calls["oauth2/token"] == 2, step=0.01, limit=5)
                token = await broker.get(_identity(tmp_path, "fast"), TARGET, tmp_path, _deadline())
                assert token.token.startswith("caat_")
                assert slow.calls["oauth2/token"] == 2  # its host's share of the slots
                tg.cancel_scope.cancel()

    run_virtual(main)


async def _ignore_errors(work: Awaitable[object]) -> None:
    with contextlib.suppress(MendaError):
        await work


def test_beyond_the_flight_limit_a_request_is_told_busy_at_once(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        upstream.gate["oauth2/token"] = anyio.Event()
        async with Broker(upstream.send, clock=clock, policy=QUICK, max_flights=2) as broker:
            async with anyio.create_task_group() as tg:
                for n in range(2):
                    identity = _identity(tmp_path, f"c{n}")
                    tg.start_soon(
                        _ignore_errors, broker.get(identity, TARGET, tmp_path, _deadline())
                    )
                await _until(lambda: broker.flights == 2, step=0.01, limit=5)
                started = clock()
                with pytest.raises(DaemonBusy):
                    await broker.get(_identity(tmp_path, "third"), TARGET, tmp_path, _deadline())
                assert clock() == started
                assert broker.counters["busy"] == 1
                tg.cancel_scope.cancel()

    run_virtual(main)


def test_the_least_recently_used_entries_go_beyond_the_entry_limit(tmp_path: Path) -> None:
    async def main(clock: Callable[[], float]) -> None:
        upstream = Upstream(clock)
        async with Broker(upstream.send, clock=clock, policy=QUICK, max_entries=3) as broker:
            identities = [_identity(tmp_path, f"c{n}") for n in range(5)]
            for identity in identities:
                await broker.get(identity, TARGET, tmp_path, _deadline())
            assert len(broker.entries) == 3
            assert broker.counters["entries_evicted"] == 2
            kept = {entry.identity.client_id for entry in broker.entries.values()}
            assert kept == {"c2", "c3", "c4"}
            assert broker.summary()["entries"] == 3

    run_virtual(main)


def test_refresh_schedule_wakes_each_key_once_at_its_latest_time() -> None:
    schedule: RefreshSchedule[str] = RefreshSchedule()
    schedule.arm("a", 10.0)
    schedule.arm("b", 5.0)
    schedule.arm("a", 3.0)  # re-armed earlier: the old time no longer counts
    schedule.arm("c", 7.0)
    schedule.disarm("c")
    assert schedule.next_at() == 3.0
    assert schedule.pop_due(4.0) == ["a"]
    assert schedule.next_at() == 5.0
    assert schedule.pop_due(100.0) == ["b"]
    assert schedule.next_at() is None and len(schedule) == 0


def test_refresh_schedule_stays_small_when_one_key_is_re_armed_often() -> None:
    schedule: RefreshSchedule[str] = RefreshSchedule()
    for n in range(10_000):
        schedule.arm("k", float(n))
    assert len(schedule._heap) < 200
    assert schedule.pop_due(1e9) == ["k"]
