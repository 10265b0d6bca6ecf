"""The daemon's socket server: wire protocol v1 (``menda_keyring.wire``) over asyncio.

Every connection is checked (peer uid must be ours), bounded (request line size,
idle read timeout, a cap on open connections) and may carry several requests in
sequence. Nothing a client sends can crash the daemon: malformed input gets a
``bad_request`` error reply or a closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from menda_keyring.errors import MendaError, error_to_wire, redact
from menda_keyring.identity import (
    DEFAULT_PROFILE,
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_HOST,
    ENV_PROFILE,
    Identity,
    config_path,
    home_from_env,
    identity_from_profile,
    read_config,
    resolve_identity,
)
from menda_keyring.resolver import Deadline
from menda_keyring.retry import ceiling_from_env
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import parse_codeartifact_service
from menda_keyring.wire import HEARTBEAT, MAX_LINE, VERSION, identity_env

from . import __version__
from .broker import Broker
from .runtime import peer_uid

log = logging.getLogger("menda_credd.server")

READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
HEARTBEAT_LINE = json.dumps({"v": VERSION, "wait": True}, separators=(",", ":")).encode() + b"\n"
NULL_ANSWER = {"v": VERSION, "ok": True, "password": None}


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def bad_request(message: str) -> dict[str, Any]:
    return {
        "v": VERSION,
        "ok": False,
        "error": {"kind": "bad_request", "message": message, "status_code": None},
    }


def error_reply(error: MendaError, identity: Identity | None = None) -> dict[str, Any]:
    """The typed error as in-process resolution would raise it, secret redacted."""
    if identity is not None:
        redact(error, (identity.client_secret or "",))
    return {"v": VERSION, "ok": False, "error": error_to_wire(error)}


class IdentityCache:
    """``resolve_identity`` per request, with ``mendacfg`` parsed once per file version."""

    MAX_FILES = 64

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[tuple[int, int, int, int], Any]] = {}

    def resolve(self, env: Mapping[str, str], home: Path) -> Identity:
        if env.get(ENV_CLIENT_ID) and env.get(ENV_CLIENT_SECRET) and env.get(ENV_HOST):
            return resolve_identity(env, home)  # the trio: no file involved
        profile = env.get(ENV_PROFILE) or DEFAULT_PROFILE
        path = config_path(home)
        return identity_from_profile(self.parsed(path), profile, path)

    def parsed(self, path: Path) -> Any:
        try:
            st = os.stat(path)
        except OSError:
            return read_config(path)  # raises the same typed error as in process
        if not stat.S_ISREG(st.st_mode):
            return read_config(path)
        version = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        cached = self._parsed.get(str(path))
        if cached is not None and cached[0] == version:
            return cached[1]
        parser = read_config(path)
        if len(self._parsed) >= self.MAX_FILES:
            self._parsed.clear()
        self._parsed[str(path)] = (version, parser)
        return parser


class CredServer:
    """Serves connections for one daemon; ``status()`` is what ``menda-credd status`` shows."""

    def __init__(
        self,
        broker: Broker,
        socket_path: str,
        *,
        uid: int | None = None,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT,
        activated: bool = False,
    ) -> None:
        self.broker = broker
        self.socket_path = socket_path
        self.uid = os.getuid() if uid is None else uid
        self.max_connections = max_connections
        self.read_timeout = read_timeout
        self.activated = activated
        self.identities = IdentityCache()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        #: Open connections and when each last did something (monotonic).
        self.connections: dict[asyncio.Task[Any], float] = {}
        self.busy: set[asyncio.Task[Any]] = set()
        self.stopping = False

    # -- connections ---------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if self.stopping:
                return
            uid = peer_uid(writer.get_extra_info("socket"))
            if uid != self.uid:
                self.broker.count("peer_rejections")
                log.warning(
                    "rejected a connection from uid %s (serving uid %d only)", uid, self.uid
                )
                return
            if len(self.connections) >= self.max_connections and not self._evict_idle():
                self.broker.count("connections_refused")
                log.warning(
                    "too many open connections (%d), all busy; closing a new one",
                    self.max_connections,
                )
                return
            self.broker.count("connections")
            self.connections[task] = time.monotonic()
            try:
                await self._serve(reader, writer, task)
            finally:
                self.connections.pop(task, None)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("internal error on a connection")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[Any]
    ) -> None:
        while not self.stopping:
            try:
                line = await asyncio.wait_for(reader.readline(), self.read_timeout)
            except asyncio.TimeoutError:
                return
            except (ValueError, asyncio.LimitOverrunError):
                self.broker.count("bad_requests")
                writer.write(encode(bad_request(f"request line longer than {MAX_LINE} bytes")))
                await self._drain(writer)
                return
            if not line.strip():
                if not line:
                    return  # EOF
                continue
            if len(line) > MAX_LINE:
                self.broker.count("bad_requests")
                writer.write(encode(bad_request(f"request line longer than {MAX_LINE} bytes")))
                await self._drain(writer)
                return
            self.busy.add(task)
            self.connections[task] = time.monotonic()
            try:
                reply = await self.dispatch(line, writer)
                writer.write(encode(reply))
                await self._drain(writer)
            finally:
                self.busy.discard(task)
                self.connections[task] = time.monotonic()

    def _evict_idle(self) -> bool:
        """At the cap, make room by closing the longest-idle connection; False if all are busy.

        An idle connection costs its client nothing to lose (it can reconnect), whereas
        refusing the newcomer would send a ``keyring get`` to in-process resolution.
        """
        idle = [(since, task) for task, since in self.connections.items() if task not in self.busy]
        if not idle:
            return False
        _since, victim = min(idle, key=lambda pair: pair[0])
        self.connections.pop(victim, None)
        victim.cancel()
        # connections_refused counts every connection closed because of the cap;
        # connections_evicted the part of them that were idle ones making room.
        self.broker.count("connections_refused")
        self.broker.count("connections_evicted")
        return True

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """Flush, but never wait forever on a client that does not read its answers."""
        try:
            await asyncio.wait_for(writer.drain(), self.read_timeout)
        except asyncio.TimeoutError:
            writer.transport.abort()
            raise ConnectionResetError("client does not read its answers") from None

    # -- requests ------------------------------------------------------------------------

    async def dispatch(self, line: bytes, writer: asyncio.StreamWriter | None = None) -> dict:
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.broker.count("bad_requests")
            return bad_request("request is not JSON")
        if not isinstance(message, dict):
            self.broker.count("bad_requests")
            return bad_request("request must be a JSON object")
        version = message.get("v")
        if type(version) is not int or version != VERSION:
            self.broker.count("bad_requests")
            return bad_request(f"unsupported protocol version; this daemon speaks v{VERSION}")
        op = message.get("op")
        if op == "get":
            return await self.get(message, writer)
        if op == "ping":
            return {"v": VERSION, "ok": True, "pid": os.getpid(), "version": __version__}
        if op == "status":
            return {"v": VERSION, "ok": True, "status": self.status()}
        self.broker.count("bad_requests")
        shown = op[:40] if isinstance(op, str) else type(op).__name__
        return bad_request(f"unknown op {shown!r}; expected get, ping or status")

    async def get(self, message: dict, writer: asyncio.StreamWriter | None) -> dict:
        service = message.get("service")
        username = message.get("username")
        raw_env = message.get("env", {})
        if not isinstance(service, str):
            self.broker.count("bad_requests")
            return bad_request("service must be a string")
        if username is not None and not isinstance(username, str):
            self.broker.count("bad_requests")
            return bad_request("username must be a string or null")
        if not isinstance(raw_env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_env.items()
        ):
            self.broker.count("bad_requests")
            return bad_request("env must be an object of strings")
        if username not in (None, "aws"):
            return dict(NULL_ANSWER)
        target = parse_codeartifact_service(service)
        if target is None:
            return dict(NULL_ANSWER)
        self.broker.count("requests")
        env = identity_env(raw_env)
        identity = None
        try:
            deadline = Deadline(ceiling_from_env(env))
            home = home_from_env(env)
            identity = self.identities.resolve(env, home)
            scope = ""
            if identity.auth_type == "u2m":
                scope = await self.broker.user_scope(identity, home, deadline)
            token = self.broker.peek(identity, target, scope)
            if token is None:
                token = await self._wait_with_heartbeats(
                    self.broker.get(identity, target, home, deadline, scope), writer
                )
        except MendaError as exc:
            return error_reply(exc, identity)
        return {
            "v": VERSION,
            "ok": True,
            "username": token.username,
            "password": token.token,
            "expires_at": token.expires_at,
        }

    async def _wait_with_heartbeats(
        self, work: Any, writer: asyncio.StreamWriter | None
    ) -> RegistryToken:
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=HEARTBEAT * 0.8)
                if done:
                    return task.result()
                if writer is not None:
                    writer.write(HEARTBEAT_LINE)
                    await self._drain(writer)
        finally:
            if not task.done():
                task.cancel()

    # -- shutdown and status -------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Stop: close idle connections now, let busy ones finish for up to ``timeout`` s."""
        self.stopping = True
        for task in [t for t in self.connections if t not in self.busy]:
            task.cancel()
        end = time.monotonic() + timeout
        while self.busy and time.monotonic() < end:
            await asyncio.wait(set(self.busy), timeout=end - time.monotonic())
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.wait(set(self.connections), timeout=1.0)

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uid": self.uid,
            "socket": self.socket_path,
            "socket_activated": self.activated,
            "started_at": self.started_at,
            "uptime": round(time.monotonic() - self._started_mono, 3),
            "idle_timeout": self.broker.idle_timeout,
            "open_connections": len(self.connections),
            "counters": dict(self.broker.counters),
            "entries": self.broker.snapshot(),
        }
