"""The daemon's socket server: the protocol of ``menda_keyring.daemon_protocol`` on anyio.

Every connection is checked (peer uid must be ours), bounded (request line size,
a read timeout per line, a send timeout per answer, the cap of
:mod:`menda_credd.connections`) and may carry several requests in sequence.
Nothing a client sends can crash the daemon: malformed input gets a
``bad_request`` (or ``unsupported_version``) reply or a closed connection.

Connection handlers run in one task group; each has its own cancel scope, so
eviction and shutdown are cancellations. The warm path (a token in memory) is kept
cheap: the identity an environment-trio ``env`` resolves to and the registry a
service string names are remembered (:mod:`menda_credd.identity_memo`), and the
encoded answer line is kept with each token instead of being re-encoded.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from menda_keyring import daemon_protocol as wire
from menda_keyring.daemon_protocol import (
    HEARTBEAT,
    HEARTBEAT_LINE,
    MAX_LINE,
    NOT_OURS_LINE,
    GetRequest,
    LineTooLong,
    PingReply,
    PingRequest,
    StatusReply,
    TokenReply,
    decode_request,
    encode_reply,
    error_line,
    take_line,
)
from menda_keyring.errors import BadRequestError, DaemonProtocolError, MendaError, redact
from menda_keyring.identity import Identity
from menda_keyring.peercred import accepted, peer_credentials
from menda_keyring.retry import Deadline
from menda_keyring.tokens import RegistryToken
from menda_keyring.urls import CODEARTIFACT_USERNAME, RegistryTarget, parse_codeartifact_service

from . import __version__
from .broker import Broker
from .connections import MAX_CONNECTIONS, READ_TIMEOUT, Connection, ConnectionManager, Throttle
from .entries import Entry
from .identity_memo import MISSING, IdentityCache, Memo
from .prewarmer import Prewarmer
from .status_report import MAX_ENTRIES, status_body

log = logging.getLogger("menda_credd.server")

__all__ = ["MAX_CONNECTIONS", "READ_TIMEOUT", "CredServer", "entry_answer", "token_answer"]


def token_answer(token: RegistryToken) -> bytes:
    return encode_reply(TokenReply(token.username, token.token, token.expires_at))


def entry_answer(entry: Entry) -> bytes:
    """The answer line for ``entry.token``, encoded once per token object."""
    token = entry.token
    assert token is not None
    cached = entry.answer
    if cached is None or cached[0] is not token:
        cached = entry.answer = (token, token_answer(token))
    return cached[1]


def error_reply(error: MendaError, identity: Identity | None = None) -> bytes:
    """The typed error as in-process resolution would raise it, secret redacted."""
    if identity is not None:
        redact(error, (identity.client_secret or "",))
    return error_line(error)


class _TooLong(Exception):
    """A request line past MAX_LINE: answered once, then the connection closes."""


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
        prewarmer: Prewarmer | None = None,
    ) -> None:
        self.broker = broker
        #: Told of every request it answers for, when pre-warm is on.
        self.prewarmer = prewarmer
        self.socket_path = socket_path
        self.uid = os.getuid() if uid is None else uid
        self.read_timeout = read_timeout
        self.activated = activated
        self.identities = IdentityCache()
        self.targets = Memo()
        self.connections = ConnectionManager(max_connections, broker.count)
        self.rejections = Throttle()
        self.refusals = Throttle()
        self.accept_failures = Throttle()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        #: The accept loop's cancel scope while it runs (anyio makes scopes inside a loop).
        self._accepting: anyio.CancelScope | None = None

    @property
    def stopping(self) -> bool:
        return self.connections.stopping

    # -- listening -----------------------------------------------------------------------

    async def serve(
        self, listener: SocketListener, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept and serve until :meth:`shutdown`; returns when every connection has ended.

        The listener is closed when accepting stops; its socket file is left alone (the
        daemon removes a file it bound itself; a service manager's stays).
        """
        self._accepting = anyio.CancelScope()
        if self.stopping:
            self._accepting.cancel()
        async with anyio.create_task_group() as handlers:
            with self._accepting:
                task_status.started()
                async with listener:
                    await self._accept(listener, handlers)

    async def _accept(self, listener: SocketListener, handlers: TaskGroup) -> None:
        while True:
            try:
                stream = await listener.accept()
            except anyio.ClosedResourceError:
                return
            except (anyio.BrokenResourceError, OSError) as exc:
                # Out of file descriptors, say: the listener itself is fine; breathe and retry.
                held = self.accept_failures.admit(time.monotonic())
                if held is not None:
                    log.warning(
                        "accepting a connection failed: %s%s",
                        exc.__cause__ or exc,
                        f" ({held} more since the last such warning)" if held else "",
                    )
                await anyio.sleep(0.1)
                continue
            handlers.start_soon(self.handle, stream)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace`` s to finish."""
        self.connections.stopping = True
        if self._accepting is not None:
            self._accepting.cancel()
        await self.connections.drain(grace)

    # -- connections ---------------------------------------------------------------------

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            if self.stopping:
                return
            peer = peer_credentials(stream.extra(SocketAttribute.raw_socket))  # noqa: S610 - anyio, not Django
            if not accepted(peer, self.uid):
                self.broker.count("peer_rejections")
                held = self.rejections.admit(time.monotonic())
                if held is not None:
                    log.warning(
                        "rejected a connection from %s (serving uid %d only)%s",
                        "an unknown uid" if peer.uid is None else f"uid {peer.uid}",
                        self.uid,
                        f"; {held} more rejected since the last such warning" if held else "",
                    )
                return
            conn = self.connections.admit()
            if conn is None:
                held = self.refusals.admit(time.monotonic())
                if held is not None and not self.stopping:
                    log.warning(
                        "too many open connections (%d), all busy; closing a new one%s",
                        self.connections.cap,
                        f" ({held} more since the last such warning)" if held else "",
                    )
                return
            try:
                with conn.scope:
                    await self._serve_lines(stream, conn)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                pass
            except Exception:
                log.exception("internal error on a connection")
            finally:
                self.connections.close(conn)

    async def _serve_lines(self, stream: SocketStream, conn: Connection) -> None:
        """Requests in sequence; the connection's cancel scope carries its one timeout.

        The scope's deadline is READ_TIMEOUT from the moment the connection waits for
        its client: for the whole next line, and from the moment an answer is ready
        for the client to take it and send its next line. While a request is worked on
        there is none (a ``get`` may wait for menda-cloud far longer, with heartbeats).
        The deadline passing cancels the scope and so closes the connection: one timer
        per connection, moved, rather than one per read and per send.
        """
        scope = conn.scope
        timeout = self.read_timeout
        raw = stream.extra(SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
        scope.deadline = anyio.current_time() + timeout
        buffer = b""
        while not self.stopping:
            try:
                line, buffer = await self._read_line(stream, buffer)
            except _TooLong:
                self.broker.count("bad_requests")
                too_long = BadRequestError(f"request line longer than {MAX_LINE} bytes")
                await stream.send(error_line(too_long))
                return
            if line is None:
                return  # end of stream
            if not line.strip():
                continue
            self.connections.begin(conn)
            try:
                scope.deadline = math.inf
                answer = await self.respond(line, stream)
                scope.deadline = anyio.current_time() + timeout
                await _send_now(stream, raw, answer)
            finally:
                self.connections.end(conn)

    async def _read_line(self, stream: SocketStream, buffer: bytes) -> tuple[bytes | None, bytes]:
        """The next line (None at end of stream) and what follows it in ``buffer``."""
        while True:
            try:
                line, rest = take_line(buffer, MAX_LINE)
            except LineTooLong:
                raise _TooLong from None
            if line is not None:
                return line, rest
            try:
                chunk = await stream.receive(65536)
            except anyio.EndOfStream:
                # A last request without its newline is still answered.
                return (buffer or None), b""
            buffer += chunk

    async def _send(self, stream: SocketStream, data: bytes) -> None:
        """Send, but never wait forever on a client that does not read its answers."""
        with anyio.move_on_after(self.read_timeout) as scope:
            await stream.send(data)
        if scope.cancelled_caught:
            raise ConnectionResetError("client does not read its answers")

    # -- requests ------------------------------------------------------------------------

    async def dispatch(self, line: bytes, stream: SocketStream | None = None) -> wire.Reply:
        """The answer to one request line, decoded (:meth:`respond` gives the line itself)."""
        op = _op_of(line)
        return wire.decode_reply(await self.respond(line, stream), op)

    async def respond(self, line: bytes, stream: SocketStream | None = None) -> bytes:
        """The answer line to one request line."""
        try:
            request = decode_request(line)
        except DaemonProtocolError as exc:
            self.broker.count("bad_requests")
            return error_line(exc)
        if isinstance(request, GetRequest):
            return await self.get(request, stream)
        if isinstance(request, PingRequest):
            return encode_reply(PingReply(os.getpid(), __version__, wire.VERSION))
        return encode_reply(StatusReply(self.status()))

    def target(self, service: str) -> RegistryTarget | None:
        """``parse_codeartifact_service``, remembered per service string (bounded)."""
        target = self.targets.get(service)
        if target is MISSING:
            target = parse_codeartifact_service(service)
            self.targets.put(service, target)
        return target  # type: ignore[no-any-return]

    async def get(self, request: GetRequest, stream: SocketStream | None) -> bytes:
        if request.username not in (None, CODEARTIFACT_USERNAME):
            return NOT_OURS_LINE
        target = self.target(request.service)
        if target is None:
            return NOT_OURS_LINE
        self.broker.count("requests")
        identity = None
        try:
            identity, home, ceiling = await self.identities.request(request.env)
            scope = ""
            deadline = None
            if identity.auth_type == "u2m":
                deadline = Deadline(ceiling)
                scope = await self.broker.user_scope(identity, home, deadline)
            if self.prewarmer is not None:
                self.prewarmer.asked(identity, home, target)
            entry = self.broker.serve_cached(identity, target, scope)
            if entry is not None:
                return entry_answer(entry)
            work = self.broker.get(identity, target, home, deadline or Deadline(ceiling), scope)
            if stream is None:
                return token_answer(await work)
            return token_answer(await self._with_heartbeats(work, stream))
        except MendaError as exc:
            return error_reply(exc, identity)

    async def _with_heartbeats(self, work: Any, stream: SocketStream) -> RegistryToken:
        """Await ``work``, sending a heartbeat every HEARTBEAT s until it is done.

        A client that goes away (or stops reading) meanwhile ends the wait: the
        connection closes with ``ConnectionResetError``.
        """
        outcome: list[Any] = []
        gone: list[BaseException] = []

        async def beat(scope: anyio.CancelScope) -> None:
            try:
                while True:
                    await anyio.sleep(HEARTBEAT * 0.8)
                    # Shielded: a heartbeat is never cut in half by the answer being ready
                    # (the send has its own time limit).
                    with anyio.CancelScope(shield=True):
                        await self._send(stream, HEARTBEAT_LINE)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                gone.append(exc)
                scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(beat, group.cancel_scope)
            try:
                outcome.append(await work)
            except MendaError as exc:
                outcome.append(exc)
            group.cancel_scope.cancel()
        if gone or not outcome:
            raise ConnectionResetError("client went away while its token was resolved")
        result = outcome[0]
        if isinstance(result, MendaError):
            raise result
        return result  # type: ignore[no-any-return]

    # -- shutdown and status -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        base = {
            "pid": os.getpid(),
            "version": __version__,
            "protocol": wire.VERSION,
            "uid": self.uid,
            "socket": self.socket_path,
            "socket_activated": self.activated,
            "started_at": self.started_at,
            "uptime": round(time.monotonic() - self._started_mono, 3),
            "idle_timeout": self.broker.idle_timeout,
            "open_connections": len(self.connections),
            "counters": dict(self.broker.counters),
            "prewarm": {"enabled": False} if self.prewarmer is None else self.prewarmer.status(),
        }
        broker = self.broker
        return status_body(base, broker.summary(), broker.snapshot(limit=MAX_ENTRIES))


async def _send_now(stream: SocketStream, raw: socket.socket, data: bytes) -> None:
    """Send ``data``; straight into the kernel's buffer when it has room (the warm path).

    An answer line almost always fits the socket buffer: handing it over at once spares
    the event-loop round trip that ``stream.send`` makes before it writes. What does not
    fit goes through ``stream.send``, which waits for the client to read.
    """
    try:
        sent = raw.send(data)
    except BlockingIOError:
        sent = 0
    if sent < len(data):
        await stream.send(data[sent:])


def _op_of(line: bytes) -> str:
    try:
        request = decode_request(line)
    except DaemonProtocolError:
        return "get"
    return request.op
