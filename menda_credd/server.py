"""The daemon's socket server: wire protocol v1 (``menda_keyring.daemon_protocol``) over asyncio.

Every connection is checked (peer uid must be ours), bounded (request line size,
idle read timeout, a cap on open connections) and may carry several requests in
sequence. Nothing a client sends can crash the daemon: malformed input gets a
``bad_request`` error reply or a closed connection.

The warm path (a token in memory) is kept cheap: the identity an environment-trio
``env`` resolves to, the registry a service string names and the encoded answer for
each token are remembered (bounded), and the read timeout is one timer per
connection rather than a task and a timer per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from menda_keyring.daemon_protocol import HEARTBEAT, MAX_LINE, VERSION, identity_env
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
from menda_keyring.peercred import peer_uid
from menda_keyring.retry import Deadline, ceiling_from_env
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import RegistryTarget, parse_codeartifact_service

from . import __version__
from .broker import Broker
from .entries import Entry

log = logging.getLogger("menda_credd.server")

READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 256
HEARTBEAT_LINE = json.dumps({"v": VERSION, "wait": True}, separators=(",", ":")).encode() + b"\n"
NULL_ANSWER = {"v": VERSION, "ok": True, "password": None}
#: Bound of each warm-path memo (env -> identity, service -> registry).
MEMO_SIZE = 4096
_MISSING: Any = object()


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


NULL_LINE = encode(NULL_ANSWER)


def token_answer(token: RegistryToken) -> bytes:
    return encode(
        {
            "v": VERSION,
            "ok": True,
            "username": token.username,
            "password": token.token,
            "expires_at": token.expires_at,
        }
    )


def entry_answer(entry: Entry) -> bytes:
    """The answer line for ``entry.token``, encoded once per token object."""
    token = entry.token
    assert token is not None
    cached = entry.answer
    if cached is None or cached[0] is not token:
        cached = entry.answer = (token, token_answer(token))
    return cached[1]


class Memo:
    """A bounded least-recently-used mapping (the warm path's memos)."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        """The value, or ``_MISSING``."""
        value = self._data.get(key, _MISSING)
        if value is not _MISSING:
            self._data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self._data[key] = value
        if len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


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
    """``resolve_identity`` per request, with ``mendacfg`` parsed once per file version.

    Identities from the environment trio depend on nothing but the ``env`` the client
    sent, so :meth:`request` remembers them by that mapping (bounded). Profile identities
    are resolved every time (one ``stat`` while ``mendacfg`` is unchanged), so an edit is
    noticed at once.
    """

    MAX_FILES = 64

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._parsed: dict[str, tuple[tuple[int, int, int, int], Any]] = {}
        self._from_env = Memo(size)

    def request(self, raw_env: Mapping[str, str]) -> tuple[Identity, Path, float]:
        """Identity, home folder and resolution ceiling for a request's ``env``.

        Raises the typed error in-process resolution would, in the same order (ceiling,
        then identity); errors are never remembered.
        """
        key = frozenset(raw_env.items())
        hit = self._from_env.get(key)
        if hit is not _MISSING:
            return hit  # type: ignore[no-any-return]
        env = identity_env(raw_env)
        ceiling = ceiling_from_env(env)
        home = home_from_env(env)
        identity = self.resolve(env, home)
        if identity.source == "env":
            self._from_env.put(key, (identity, home, ceiling))
        return identity, home, ceiling

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


class ReadDeadline:
    """The idle read timeout of one connection: one timer, not a task and a timer per line.

    ``start()`` when a read begins and ``stop()`` when it ends. The timer is armed for the
    first read and, when it fires, re-armed for the read then in progress (if any) or left
    for the next ``start()``; a read that lasts ``timeout`` seconds ends the connection the
    way end-of-file would (reading paused first, so nothing more is fed in), and
    ``expired`` tells it apart from a real end-of-file.
    """

    __slots__ = ("_loop", "_reader", "_transport", "timeout", "_since", "_handle", "expired")

    def __init__(
        self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport, timeout: float
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = reader
        self._transport = transport
        self.timeout = timeout
        self._since: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.expired = False

    def start(self) -> None:
        now = self._loop.time()
        self._since = now
        if self._handle is None:
            self._handle = self._loop.call_at(now + self.timeout, self._fire)

    def stop(self) -> None:
        self._since = None

    def close(self) -> None:
        self._since = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        if self._since is None:
            return  # not reading now: the next start() arms a new timer
        due = self._since + self.timeout
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self.expired = True
        with contextlib.suppress(Exception):
            self._transport.pause_reading()  # type: ignore[attr-defined]
        self._reader.feed_eof()


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
        self.targets = Memo()
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
        deadline = ReadDeadline(reader, writer.transport, self.read_timeout)
        try:
            await self._serve_lines(reader, writer, task, deadline)
        finally:
            deadline.close()

    async def _serve_lines(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        task: asyncio.Task[Any],
        deadline: ReadDeadline,
    ) -> None:
        while not self.stopping:
            deadline.start()
            try:
                line: bytes | None = await reader.readline()
            except (ValueError, asyncio.LimitOverrunError):
                line = None  # longer than the reader's limit
            finally:
                deadline.stop()
            if deadline.expired:
                return  # the read timeout: close, as for an idle client
            if line is None:
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
                writer.write(await self.respond(line, writer))
                if writer.transport.get_write_buffer_size():
                    await self._drain(writer)  # only when the kernel did not take it all
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
        """The answer to one request line, decoded (:meth:`respond` gives the line itself)."""
        answer: dict = json.loads(await self.respond(line, writer))
        return answer

    async def respond(self, line: bytes, writer: asyncio.StreamWriter | None = None) -> bytes:
        """The answer line to one request line."""
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.broker.count("bad_requests")
            return encode(bad_request("request is not JSON"))
        if not isinstance(message, dict):
            self.broker.count("bad_requests")
            return encode(bad_request("request must be a JSON object"))
        version = message.get("v")
        if type(version) is not int or version != VERSION:
            self.broker.count("bad_requests")
            return encode(
                bad_request(f"unsupported protocol version; this daemon speaks v{VERSION}")
            )
        op = message.get("op")
        if op == "get":
            return await self.get(message, writer)
        if op == "ping":
            return encode({"v": VERSION, "ok": True, "pid": os.getpid(), "version": __version__})
        if op == "status":
            return encode({"v": VERSION, "ok": True, "status": self.status()})
        self.broker.count("bad_requests")
        shown = op[:40] if isinstance(op, str) else type(op).__name__
        return encode(bad_request(f"unknown op {shown!r}; expected get, ping or status"))

    def target(self, service: str) -> RegistryTarget | None:
        """``parse_codeartifact_service``, remembered per service string (bounded)."""
        target = self.targets.get(service)
        if target is _MISSING:
            target = parse_codeartifact_service(service)
            self.targets.put(service, target)
        return target  # type: ignore[no-any-return]

    async def get(self, message: dict, writer: asyncio.StreamWriter | None) -> bytes:
        service = message.get("service")
        username = message.get("username")
        raw_env = message.get("env", {})
        if not isinstance(service, str):
            self.broker.count("bad_requests")
            return encode(bad_request("service must be a string"))
        if username is not None and not isinstance(username, str):
            self.broker.count("bad_requests")
            return encode(bad_request("username must be a string or null"))
        if not isinstance(raw_env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_env.items()
        ):
            self.broker.count("bad_requests")
            return encode(bad_request("env must be an object of strings"))
        if username not in (None, "aws"):
            return NULL_LINE
        target = self.target(service)
        if target is None:
            return NULL_LINE
        self.broker.count("requests")
        identity = None
        try:
            identity, home, ceiling = self.identities.request(raw_env)
            scope = ""
            deadline = None
            if identity.auth_type == "u2m":
                deadline = Deadline(ceiling)
                scope = await self.broker.user_scope(identity, home, deadline)
            entry = self.broker.serve_cached(identity, target, scope)
            if entry is not None:
                return entry_answer(entry)
            token = await self._wait_with_heartbeats(
                self.broker.get(identity, target, home, deadline or Deadline(ceiling), scope),
                writer,
            )
        except MendaError as exc:
            return encode(error_reply(exc, identity))
        return token_answer(token)

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
