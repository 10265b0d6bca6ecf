"""The server's warm path in process: what it remembers, and that answers stay the same."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import anyio
import pytest

from menda_credd.broker import Broker, Entry
from menda_credd.identity_memo import Memo
from menda_credd.server import CredServer
from menda_keyring.cloud_protocol import HttpRequest, HttpResponse
from menda_keyring.daemon_protocol import NotOurs, TokenReply, frame
from menda_keyring.errors import InvalidHostError
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import parse_codeartifact_service

URL = (
    "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/menda-plugins/simple/"
)
TARGET = parse_codeartifact_service(URL)


async def _never(request: HttpRequest, timeout: float) -> HttpResponse:
    raise AssertionError("no upstream call expected")


def _env(home: Path, secret: str = "s", host: str = "https://api.example.menda.cloud") -> dict:  # noqa: S107
    return {
        "MENDA_CLIENT_ID": "c",
        "MENDA_CLIENT_SECRET": secret,
        "MENDA_HOST": host,
        "HOME": str(home),
    }


def _line(env: dict, service: str = URL, username: str | None = "aws") -> bytes:
    message = {"v": 1, "op": "get", "service": service, "username": username, "env": env}
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def test_env_trio_identities_are_remembered_by_env_and_errors_never(tmp_path: Path) -> None:
    async def main() -> None:
        cache = CredServer(Broker(_never), "/nonexistent").identities
        first, home, ceiling = await cache.request(_env(tmp_path))
        assert (home, ceiling) == (tmp_path, 30.0)
        again = await cache.request(dict(reversed(list(_env(tmp_path).items()))))
        assert again[0] is first
        other = (await cache.request(_env(tmp_path, secret="t")))[0]
        assert other is not first and other.fingerprint != first.fingerprint
        for _ in range(2):
            with pytest.raises(InvalidHostError):
                await cache.request(_env(tmp_path, host="http://evil.example"))
        assert len(cache._from_env) == 2

    anyio.run(main)


def test_profile_identities_follow_mendacfg_edits(tmp_path: Path) -> None:
    async def main() -> None:
        cache = CredServer(Broker(_never), "/nonexistent").identities
        cfg = tmp_path / ".menda" / "mendacfg"
        cfg.parent.mkdir()
        cfg.write_text("[default]\nhost = https://one.example.menda.cloud\n")
        env = {"HOME": str(tmp_path)}
        assert (await cache.request(env))[0].host == "https://one.example.menda.cloud"
        cfg.write_text("[default]\nhost = https://two.example.menda.cloud/\n")
        assert (await cache.request(env))[0].host == "https://two.example.menda.cloud"
        assert len(cache._from_env) == 0

    anyio.run(main)


def test_memo_is_a_bounded_lru() -> None:
    memo = Memo(2)
    memo.put("a", 1)
    memo.put("b", None)
    assert memo.get("a") == 1  # "b" is now the least recently used
    memo.put("c", 3)
    assert memo.get("b") is not memo.get("a") == 1
    assert memo.get("c") == 3 and len(memo) == 2
    assert memo.get("b") is not None  # the missing marker, not the value None


def test_warm_answers_are_encoded_once_per_token_and_unchanged(tmp_path: Path) -> None:
    async def main() -> None:
        broker = Broker(_never)
        server = CredServer(broker, "/nonexistent")
        env = _env(tmp_path)
        identity = (await server.identities.request(env))[0]
        assert TARGET is not None
        key = (identity.fingerprint, TARGET)
        now = time.time()
        entry = Entry(key, identity, TARGET, tmp_path, now)
        entry.token = RegistryToken("caat_one", expires_at=now + 3600, issued_at=now)
        broker.entries[key] = entry
        one = await server.respond(_line(env))
        assert one == frame(
            {
                "v": 1,
                "ok": True,
                "username": "aws",
                "password": "caat_one",
                "expires_at": now + 3600,
            }
        )
        assert await server.respond(_line(env)) is one
        entry.token = RegistryToken("caat_two", expires_at=now + 7200, issued_at=now)
        two = await server.respond(_line(env))
        assert json.loads(two)["password"] == "caat_two"
        assert await server.dispatch(_line(env)) == TokenReply("aws", "caat_two", now + 7200)
        # Not ours, or another username: null, whether remembered or not.
        for line in (_line(env, "https://pypi.org/simple/"), _line(env, URL, "bob")) * 2:
            assert json.loads(await server.respond(line)) == {"v": 1, "ok": True, "password": None}
            assert await server.dispatch(line) == NotOurs()
        assert broker.counters["requests"] == 4
        assert broker.counters["hits"] == 4

    asyncio.run(main())
