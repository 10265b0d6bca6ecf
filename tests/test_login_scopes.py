"""The daemon's view of signed-in users on a virtual clock: a login keeps its registry
tokens through its refreshes, a new login never gets another's, registry tokens keep
being served while a refresh fails, and nothing the broker holds is a refresh token."""

from __future__ import annotations

import gc
import json
import math
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest

from menda_credd.broker import Broker
from menda_keyring.cloud_protocol import REFRESH_WHAT, HttpRequest, HttpResponse
from menda_keyring.errors import NoCachedLoginError
from menda_keyring.identity import Identity
from menda_keyring.paths import token_cache_path
from menda_keyring.retry import Deadline, RetryPolicy
from menda_keyring.urls import RegistryTarget
from tests.support.env import read_cache_entries, write_user_token
from tests.support.virtual_clock import run_virtual

pytestmark = pytest.mark.unit

HOST = "http://127.0.0.1:9"
USER = Identity("profile", "u2m", HOST, "u2m:default", "default")
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
QUICK = RetryPolicy(max_attempts=2, base=0.01, cap=0.02)
#: Longer than the registry tokens' refresh point, so an unused entry is still refreshed.
DAY = 24 * 3600.0


class Cloud:
    """menda-cloud in memory: refresh grants with rotation, registry exchanges."""

    def __init__(self, clock: Callable[[], float], access_lifetime: int = 3600) -> None:
        self.clock = clock
        self.access_lifetime = access_lifetime
        self.calls: Counter[str] = Counter()
        self.fail_refreshes = 0
        self.live: set[str] = set()
        self.issued: list[str] = []  # every refresh token, for the memory check

    def login(self, home: Path, expires_in: int = 3600) -> dict[str, Any]:
        access, refresh = "mut_" + secrets.token_hex(8), "mrt_" + secrets.token_hex(16)
        self.live.add(refresh)
        self.issued.append(refresh)
        expires_at = int(self.clock()) + expires_in
        write_user_token(home, "default", access, expires_at, HOST, refresh_token=refresh)
        return {"access_token": access, "refresh_token": refresh}

    async def send(self, request: HttpRequest, timeout: float) -> HttpResponse:
        self.calls[request.what] += 1
        if request.what == REFRESH_WHAT:
            if self.fail_refreshes > 0:
                self.fail_refreshes -= 1
                return _json(503, {"error": "service_unavailable"})
            refresh = parse_qs(request.body.decode())["refresh_token"][0]
            if refresh not in self.live:
                return _json(400, {"error": "invalid_grant"})
            self.live.discard(refresh)
            rotated = "mrt_" + secrets.token_hex(16)
            self.live.add(rotated)
            self.issued.append(rotated)
            return _json(
                200,
                {
                    "access_token": "mut_" + secrets.token_hex(8),
                    "expires_in": self.access_lifetime,
                    "refresh_token": rotated,
                },
            )
        expires = math.floor(self.clock()) + 12 * 3600
        expiration = datetime.fromtimestamp(expires, tz=timezone.utc)
        return _json(
            200,
            {"token": "caat_" + secrets.token_hex(8), "expiration": expiration.isoformat()},
        )


def with_broker(test: Callable[[Broker, Cloud], Awaitable[None]]) -> None:
    """Run ``test`` on a virtual clock with a running broker and its in-memory menda-cloud."""

    async def main(clock: Callable[[], float]) -> None:
        cloud = Cloud(clock)
        # A fixed draw: a first registry token is refreshed at 72 % of its life
        # (refresh.first_share), the next ones at 83 %; the test's day is laid out on that.
        broker = Broker(cloud.send, clock=clock, policy=QUICK, idle_timeout=DAY, rand=lambda: 0.9)
        async with broker:
            await test(broker, cloud)

    run_virtual(main)


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


def _deadline() -> Deadline:
    return Deadline(30.0, clock=anyio.current_time)


async def request(broker: Broker, home: Path) -> tuple[str, str]:
    """What the server does for one u2m request: (scope, registry token)."""
    scope = await broker.user_scope(USER, home, _deadline())
    token = await broker.get(USER, TARGET, home, _deadline(), scope)
    return scope, token.token


def test_a_refresh_by_the_daemon_keeps_the_logins_registry_tokens(tmp_path: Path) -> None:
    async def main(broker: Broker, cloud: Cloud) -> None:
        cloud.login(tmp_path, expires_in=30)  # already within the 60 s margin
        scope, first = await request(broker, tmp_path)
        assert cloud.calls == {REFRESH_WHAT: 1, "registry/token": 1}
        assert await request(broker, tmp_path) == (scope, first)  # from memory
        assert broker.counters["login_refreshes"] == 1 and broker.counters["hits"] == 1
        # A working day passes: the registry token is refreshed ahead of its expiry,
        # which refreshes the login again; the scope, and so the entry, stay.
        await anyio.sleep(11 * 3600)
        assert broker.counters["refreshes"] == 1
        assert cloud.calls[REFRESH_WHAT] == 2
        assert broker.counters["entries_dropped"] == 0
        again, token = await request(broker, tmp_path)
        assert again == scope and token != first
        assert cloud.calls["registry/token"] == 2  # the background refresh only

    with_broker(main)


def test_registry_tokens_are_served_while_the_login_cannot_be_refreshed(tmp_path: Path) -> None:
    async def main(broker: Broker, cloud: Cloud) -> None:
        cloud.login(tmp_path, expires_in=3600)
        _, first = await request(broker, tmp_path)
        await anyio.sleep(2 * 3600)  # the access token has run out; menda-cloud is down
        cloud.fail_refreshes = 10_000
        _, token = await request(broker, tmp_path)
        assert token == first and cloud.calls[REFRESH_WHAT] == 0  # no call needed

    with_broker(main)


def test_a_new_login_never_gets_the_previous_logins_tokens(tmp_path: Path) -> None:
    async def main(broker: Broker, cloud: Cloud) -> None:
        cloud.login(tmp_path)
        alice_scope, alice = await request(broker, tmp_path)
        cloud.login(tmp_path)  # menda auth login, as bob
        bob_scope, bob = await request(broker, tmp_path)
        assert bob_scope != alice_scope and bob != alice
        assert broker.serve_cached(USER, TARGET, alice_scope) is None
        assert broker.counters["entries_dropped"] == 1

    with_broker(main)


def test_a_refresh_by_another_process_is_taken_for_a_new_login_the_safe_side(
    tmp_path: Path,
) -> None:
    """Without rotation the refresh token tells it is the same login; with rotation nothing
    in the file does, so the daemon exchanges again rather than guess."""

    async def main(broker: Broker, cloud: Cloud) -> None:
        login = cloud.login(tmp_path)
        scope, first = await request(broker, tmp_path)
        expires = int(broker.clock()) + 3600
        same_rt = {"refresh_token": login["refresh_token"]}
        write_user_token(tmp_path, "default", "mut_by-another", expires, HOST, **same_rt)
        assert await request(broker, tmp_path) == (scope, first)
        rotated = {"refresh_token": "mrt_rotated-by-another"}
        write_user_token(tmp_path, "default", "mut_by-another-2", expires, HOST, **rotated)
        other_scope, token = await request(broker, tmp_path)
        assert other_scope != scope and token != first

    with_broker(main)


def test_a_login_that_is_over_is_said_as_in_process_and_its_entry_stays(tmp_path: Path) -> None:
    async def main(broker: Broker, cloud: Cloud) -> None:
        cloud.login(tmp_path, expires_in=0)
        cloud.live.clear()  # revoked
        before = read_cache_entries(tmp_path)
        scope = await broker.user_scope(USER, tmp_path, _deadline())
        with pytest.raises(NoCachedLoginError, match="invalid_grant"):
            await broker.get(USER, TARGET, tmp_path, _deadline(), scope)
        assert read_cache_entries(tmp_path) == before

    with_broker(main)


def _reachable(root: object, outside: object, limit: int = 200_000) -> Iterator[object]:
    """Every object reachable from ``root`` (bounded) by the garbage collector's referents,
    but not through ``outside`` (the test's menda-cloud, which the broker calls)."""
    seen: set[int] = {id(outside)}
    todo = [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        yield obj
        todo.extend(gc.get_referents(obj))


def test_nothing_the_broker_holds_is_a_refresh_token(tmp_path: Path) -> None:
    async def main(broker: Broker, cloud: Cloud) -> None:
        cloud.login(tmp_path, expires_in=30)
        await request(broker, tmp_path)
        await anyio.sleep(11 * 3600)  # and a background refresh of the login
        assert cloud.calls[REFRESH_WHAT] == 2 and len(cloud.issued) == 3
        # The live one is in the file, and only there. (No local keeps the file's text: this
        # coroutine's frame is reachable from the broker's task group on Python 3.13.)
        assert cloud.issued[-1] in token_cache_path(tmp_path).read_text()
        held = [
            obj
            for obj in _reachable(broker, outside=cloud)
            if isinstance(obj, (str, bytes))
            and any(
                rt in (obj if isinstance(obj, str) else obj.decode("latin-1"))
                for rt in cloud.issued
            )
        ]
        assert held == []

    with_broker(main)
