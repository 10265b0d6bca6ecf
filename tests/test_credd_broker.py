"""The Broker in process against an in-memory menda-cloud: how many HTTP tries each flight makes.

A background refresh makes one HTTP try per attempt (the refresh timer backs off between
attempts); a request waiting in the foreground keeps ``RetryPolicy``'s tries, also when it
joins a refresh already in flight. Both the registry call and the OAuth call (made by the
in-process resolver code in a worker thread) are covered.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from menda_credd.broker import Broker, Entry
from menda_keyring.cloud_protocol import HttpRequest, HttpResponse
from menda_keyring.errors import MendaCloudAPIError
from menda_keyring.identity import Identity, resolve_identity
from menda_keyring.retry import Deadline, RetryPolicy
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import RegistryTarget

TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
#: Four tries, with retry waits short enough for a unit test.
QUICK = RetryPolicy(max_attempts=4, base=0.01, cap=0.02)


class Upstream:
    """menda-cloud's two endpoints in memory; ``fail[what]`` answers 503 that many times."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: Counter[str] = Counter()

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self.calls[request.what] += 1
        if self.fail[request.what] > 0:
            self.fail[request.what] -= 1
            return _json(503, {"error": "service_unavailable", "message": "injected"})
        if request.what == "oauth2/token":
            return _json(
                200,
                {"access_token": "mat_" + secrets.token_urlsafe(8), "expires_in": 3600},
            )
        expires = datetime.fromtimestamp(math.floor(time.time()) + 3600, tz=timezone.utc)
        return _json(
            200,
            {
                "token": "caat_" + secrets.token_urlsafe(8),
                "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "username": "aws",
            },
        )


def _json(status: int, body: dict) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


def _identity(home: Path) -> Identity:
    env = {
        "MENDA_CLIENT_ID": "c",
        "MENDA_CLIENT_SECRET": "s",
        "MENDA_HOST": "http://127.0.0.1:9",
        "HOME": str(home),
    }
    return resolve_identity(env, home)


def _entry(broker: Broker, identity: Identity, home: Path, token: bool) -> Entry:
    key = (identity.fingerprint, TARGET)
    now = time.time()
    entry = Entry(key, identity, TARGET, home, last_used=now)
    if token:  # a token still valid for a while, due for its refresh
        entry.token = RegistryToken("caat_current", expires_at=now + 600, issued_at=now - 3000)
    broker.entries[key] = entry
    return entry


async def _refresh(broker: Broker, entry: Entry) -> None:
    """What the refresh timer does when a token falls due (``Broker._wake``), failing."""
    entry.flight = broker._start_flight(entry, Deadline(30.0), True)
    with pytest.raises(MendaCloudAPIError) as caught:
        await entry.flight
    assert "gave up after 1 attempt)" in caught.value.message
    await asyncio.sleep(0)  # the flight's done callback arms the retry timer ...
    assert entry.timer is not None
    entry.timer.cancel()  # ... which this test plays itself
    entry.timer = None


@pytest.mark.parametrize("failing", ["registry/token", "oauth2/token"])
def test_a_background_refresh_makes_one_http_try_per_attempt(tmp_path: Path, failing: str) -> None:
    async def main() -> None:
        upstream = Upstream()
        broker = Broker(upstream.send, policy=QUICK)
        identity = _identity(tmp_path)
        entry = _entry(broker, identity, tmp_path, token=True)
        for attempt in (1, 2, 3):  # menda-cloud is down: every attempt is one try
            upstream.fail[failing] = 100
            await _refresh(broker, entry)
            assert upstream.calls[failing] == attempt
            assert broker.counters["refresh_failures"] == attempt
        upstream.fail.clear()
        entry.flight = broker._start_flight(entry, Deadline(30.0), True)
        assert (await entry.flight).token != "caat_current"
        assert broker.counters["refreshes"] == 1
        assert broker.peek(identity, TARGET) is entry.token
        broker.close()

    asyncio.run(main())


@pytest.mark.parametrize("failing", ["registry/token", "oauth2/token"])
def test_a_request_in_the_foreground_keeps_every_try(tmp_path: Path, failing: str) -> None:
    async def main() -> None:
        upstream = Upstream()
        upstream.fail[failing] = 3  # three 503s, then an answer: the fourth try succeeds
        broker = Broker(upstream.send, policy=QUICK)
        token = await broker.get(_identity(tmp_path), TARGET, tmp_path, Deadline(30.0))
        assert token.token.startswith("caat_")
        assert upstream.calls[failing] == 4
        broker.close()

    asyncio.run(main())


def test_a_request_joining_a_refresh_in_flight_lifts_it_to_every_try(tmp_path: Path) -> None:
    async def main() -> None:
        upstream = Upstream()
        broker = Broker(upstream.send, policy=QUICK)
        identity = _identity(tmp_path)
        entry = _entry(broker, identity, tmp_path, token=False)
        upstream.fail["oauth2/token"] = 2
        upstream.fail["registry/token"] = 2
        entry.flight = broker._start_flight(entry, Deadline(30.0), True)
        # A request for an entry without a servable token joins the refresh at once.
        token = await broker.get(identity, TARGET, tmp_path, Deadline(30.0))
        assert token.token.startswith("caat_")
        assert upstream.calls == {"oauth2/token": 3, "registry/token": 3}
        assert broker.counters["waits"] == 1
        broker.close()

    asyncio.run(main())
