"""Figure 9: upstream load of the daemon's token engine over a simulated day.

Drives the real ``menda_credd.broker.Broker`` in process on an asyncio event loop whose
clock is virtual: ``loop.time()`` jumps straight to the next timer whenever nothing is
ready, so a day passes in seconds. The Broker takes the same virtual time as its ``clock``
(wall clock = start + loop time). Its upstream ``send`` is a fake menda-cloud in memory
(the contract's two endpoints) that can be switched to HTTP 503 for an outage window.
Worker threads (the flow reads and writes the shared token cache in anyio's
``to_thread``) are waited for in real time, never skipped over.

``python -m benchmarks.simday [--pairs 8] [--interval 300]`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import secrets
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tests.support.virtual_clock import VirtualClockLoop

DAY = 86400.0


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeUpstream:
    """menda-cloud in memory, on the virtual clock; counts every call by (identity, domain)."""

    def __init__(
        self, clock: Any, t0: float, registry_lifetime: int, outage: tuple[float, float] | None
    ) -> None:
        from menda_keyring.cloud_protocol import HttpResponse

        self.HttpResponse = HttpResponse
        self.clock = clock
        self.t0 = t0
        self.registry_lifetime = registry_lifetime
        self.outage = outage
        self.access: dict[str, str] = {}  # access token -> client id
        self.ok_oauth: dict[str, int] = defaultdict(int)
        self.ok_registry: dict[tuple[str, str], int] = defaultdict(int)
        self.outage_registry_calls = 0
        self.outage_oauth_calls = 0

    def in_outage(self, now: float) -> bool:
        if self.outage is None:
            return False
        rel = now - self.t0
        return self.outage[0] <= rel < self.outage[0] + self.outage[1]

    async def send(self, request: Any, timeout: float) -> Any:
        await asyncio.sleep(0.02)  # a loopback round trip, in virtual time
        now = self.clock()
        if request.what == "oauth2/token":
            form = urllib.parse.parse_qs(request.body.decode())
            client = form["client_id"][0]
            if self.in_outage(now):
                self.outage_oauth_calls += 1
                return self._json(503, {"error": "service_unavailable"})
            token = "mat_" + secrets.token_urlsafe(16)
            self.access[token] = client
            self.ok_oauth[client] += 1
            return self._json(
                200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}
            )
        body = json.loads(request.body)
        client = self.access.get(request.headers["Authorization"].split(" ", 1)[1], "?")
        key = (client, body["domain"])
        if self.in_outage(now):
            self.outage_registry_calls += 1
            return self._json(503, {"error": "service_unavailable", "message": "outage"})
        self.ok_registry[key] += 1
        expires = math.floor(now) + self.registry_lifetime
        return self._json(
            200,
            {
                "token": "caat_" + secrets.token_urlsafe(24),
                "expiration": rfc3339(expires),
                "username": "aws",
            },
        )

    def _json(self, status: int, obj: dict) -> Any:
        return self.HttpResponse(
            status, {"content-type": "application/json"}, json.dumps(obj).encode()
        )


async def scenario(
    registry_lifetime: int,
    outage: tuple[float, float] | None,
    pairs: int,
    interval: float,
    seed: int,
    max_attempts: int | None = None,
) -> dict[str, Any]:
    import anyio

    from menda_credd.broker import Broker
    from menda_keyring.errors import MendaError
    from menda_keyring.identity import resolve_identity
    from menda_keyring.retry import Deadline
    from menda_keyring.urls import RegistryTarget

    loop = asyncio.get_running_loop()
    limiter = anyio.to_thread.current_default_thread_limiter()
    loop.threads_busy = lambda: limiter.borrowed_tokens > 0  # type: ignore[attr-defined]
    t0 = time.time()

    def clock() -> float:
        return t0 + loop.time()

    upstream = FakeUpstream(clock, t0, registry_lifetime, outage)
    rng = random.Random(seed)
    from menda_keyring.retry import RetryPolicy

    policy = RetryPolicy(max_attempts=max_attempts) if max_attempts else None
    broker = Broker(upstream.send, clock=clock, rand=rng.random, policy=policy)
    flights: dict[tuple[str, str], list[float]] = defaultdict(list)
    start = broker._start

    def recorded_start(entry: Any, deadline: Any, background: bool) -> Any:
        flights[(entry.identity.client_id, entry.target.domain)].append(loop.time())
        return start(entry, deadline, background)

    broker._start = recorded_start  # type: ignore[method-assign]
    served: dict[tuple[str, str], int] = defaultdict(int)
    unserved: dict[tuple[str, str], int] = defaultdict(int)
    served_in_outage = 0
    requests_in_outage = 0
    tmp = tempfile.TemporaryDirectory(prefix="simday-")
    home = Path(tmp.name)
    n_ids = max(1, pairs // 2)

    async def trickle(index: int) -> None:
        nonlocal served_in_outage, requests_in_outage
        client = f"sim-client-{index % n_ids}"
        domain = f"sim-domain-{index // n_ids}"
        env = {
            "MENDA_CLIENT_ID": client,
            "MENDA_CLIENT_SECRET": "s3cret",
            "MENDA_HOST": "http://127.0.0.1:9",
            "HOME": str(home),
        }
        identity = resolve_identity(env, home)
        target = RegistryTarget(domain, "058264169513", "eu-west-1")
        await asyncio.sleep(rng.uniform(0, interval))
        while loop.time() < DAY:
            now = clock()
            during = upstream.in_outage(now)
            requests_in_outage += during
            try:
                entry = broker.serve_cached(identity, target)
                token = entry.token if entry is not None and entry.token else None
                token = token or await broker.get(identity, target, home, Deadline(30.0))
                assert token.servable(clock())
                served[(client, domain)] += 1
                served_in_outage += during
            except MendaError:
                unserved[(client, domain)] += 1
            await asyncio.sleep(interval * rng.uniform(0.5, 1.5))

    async def place_outage(after: float, length: float) -> None:
        """The outage begins a minute before the first refresh due after ``after`` s: first
        refreshes are spread over a whole cycle (refresh.first_share), so a fixed moment
        might catch none of a handful of pairs."""
        await asyncio.sleep(after)
        due = [e.refresh_at for e in broker.entries.values() if e.refresh_at is not None]
        upcoming = [when for when in due if when >= clock() + 60] or [clock() + 60]
        upstream.outage = (min(upcoming) - 60 - t0, length)

    wall = time.perf_counter()
    async with broker:
        tasks = [trickle(i) for i in range(pairs)]
        if outage is not None:
            upstream.outage = None
            tasks.append(place_outage(*outage))
        await asyncio.gather(*tasks)
    tmp.cleanup()
    lifetime = float(registry_lifetime)
    # The first exchange, an early first refresh (refresh.first_share), then at most one
    # refresh per 75 % of a lifetime.
    bound = DAY / (0.75 * lifetime) + 2
    exchanges = dict(upstream.ok_registry)
    per_pair = list(exchanges.values()) or [0]
    result: dict[str, Any] = {
        "registry_token_lifetime_s": registry_lifetime,
        "pairs": pairs,
        "request_interval_s": interval,
        "requests_served": sum(served.values()),
        "requests_unserved": sum(unserved.values()),
        "registry_exchanges_per_pair_max": max(per_pair),
        "registry_exchanges_per_pair_min": min(per_pair),
        "bound_per_pair": round(bound, 3),
        "within_bound": max(per_pair) <= bound,
        "oauth_exchanges": sum(upstream.ok_oauth.values()),
        "broker_counters": {
            k: broker.counters[k]
            for k in ("hits", "waits", "refreshes", "refresh_failures", "failures")
        },
        "real_seconds": round(time.perf_counter() - wall, 3),
    }
    if outage is not None and upstream.outage is not None:
        start, length = upstream.outage
        in_outage = {
            key: [t for t in times if start <= t < start + length] for key, times in flights.items()
        }
        # The pairs share one daemon, whose refreshes to a failing menda-cloud take turns
        # (refresh.UpstreamBackoff): its tries form one backoff sequence.
        tries = sorted(t for times in in_outage.values() for t in times)
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        attempts = [len(t) for t in in_outage.values()] or [0]
        result["outage"] = {
            "start_s": start,
            "length_s": length,
            "pairs_refreshing_in_outage": sum(1 for t in in_outage.values() if t),
            "refresh_attempts_in_outage_per_pair_max": max(attempts),
            "http_calls_in_outage_oauth": upstream.outage_oauth_calls,
            "http_calls_in_outage_registry": upstream.outage_registry_calls,
            "refresh_attempt_gap_max_s": round(max(gaps), 2) if gaps else None,
            "refresh_attempt_gap_min_s": round(min(gaps), 2) if gaps else None,
            "daemon_tries_in_outage": len(tries),
            "retry_gap_stdev_s": round(statistics.pstdev(gaps), 3) if len(gaps) > 1 else None,
            "requests_in_outage": requests_in_outage,
            "served_in_outage": served_in_outage,
            "kept_serving": requests_in_outage > 0 and served_in_outage == requests_in_outage,
        }
    return result


def run_all(pairs: int, interval: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": "the real menda_credd.broker.Broker (clock injected) on an asyncio loop with "
        "a virtual clock (the flow's retry waits are anyio sleeps on that loop); fake "
        "menda-cloud in memory; exchanges counted per (identity, domain)"
    }
    plans: dict[str, tuple[int, tuple[float, float] | None, int | None]] = {
        "12h": (43200, None, None),
        "1h": (3600, None, None),
        # (after, length): the outage starts a minute before the first refresh due after
        # ``after`` seconds, and lasts ``length``.
        "12h_outage": (43200, (3600.0, 1800.0), None),
        # With 1 h tokens a refresh at 75-85 % leaves 9-15 min: a 30 min outage outlasts it.
        "1h_outage": (3600, (3 * 3600.0, 1800.0), None),
    }
    import logging

    logging.getLogger("menda_credd").setLevel(logging.CRITICAL)
    for name, (lifetime, outage, attempts) in plans.items():
        loop = VirtualClockLoop()
        try:
            out[name] = loop.run_until_complete(
                scenario(lifetime, outage, pairs, interval, 7, attempts)
            )
        finally:
            loop.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--interval", type=float, default=300.0)
    args = parser.parse_args()
    print(json.dumps(run_all(args.pairs, args.interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
