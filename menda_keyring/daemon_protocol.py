"""The daemon's socket protocol: newline-delimited JSON over a Unix socket, in one place.

Every message the shim, ``menda-credd status``/``stop``/``start`` and the daemon
exchange is built and read here; nobody else writes ``"v"`` or a reply dict.
Standard library only, no I/O: this is on the warm path of every ``keyring get``.

Requests (one line each, at most ``MAX_LINE`` bytes)::

    {"v": 1, "op": "get", "service": URL, "username": "aws" | null, "env": {...}}
    {"v": 1, "op": "ping"}   {"v": 1, "op": "status"}

``env`` carries what decides the identity in the caller: every ``MENDA_*``
variable and ``HOME``. Replies (one line each, at most ``MAX_REPLY`` bytes)::

    {"v": 1, "wait": true}                            # heartbeat while resolving
    {"v": 1, "ok": true, "username": "aws", "password": TOKEN, "expires_at": T}
    {"v": 1, "ok": true, "password": null}             # not a CodeArtifact service
    {"v": 1, "ok": true, "pid": P, "version": "0.1.0", "protocol": 1}    # ping
    {"v": 1, "ok": true, "status": {...}}              # status
    {"v": 1, "ok": false, "error": {"kind": K, "message": M, "status_code": S}}

A heartbeat comes at least every ``HEARTBEAT`` seconds, so a client can tell a
daemon at work from a wedged one without waiting for the whole ceiling. Error
kinds are those registered in :mod:`menda_keyring.errors`; a kind the reader does
not know arrives as a plain ``MendaError`` with its message.

Versions, and what happens when a shim and a daemon of different releases meet
(``uv tool upgrade`` replaces the shim while the old daemon keeps running):

* Within one protocol version, messages only gain fields; both sides ignore
  fields they do not know. ``VERSION`` changes only for an incompatible change.
* A daemon that gets a request whose ``"v"`` is another integer (a newer shim,
  usually) does not guess: it answers one ``unsupported_version`` error in its own
  version, naming the version it speaks, and keeps the connection for more.
  A request without an integer ``"v"`` is a ``bad_request``.
* A client that gets a reply whose ``"v"`` is not its own does not read anything
  else in it: the shim drops the connection and resolves in process at once,
  logging the reason at debug level (no error line, no waiting for a timeout).
  The shim does the same with the daemon's own ``unsupported_version``,
  ``bad_request`` and ``daemon_busy`` errors (:class:`~menda_keyring.errors.DaemonProtocolError`).
* ``ping`` replies carry the daemon's package version and protocol version, so
  ``menda-credd status`` and ``start`` can tell the user that another release runs
  and how to replace it (``menda-credd stop && menda-credd start``).
  A reply in another version still names them to :class:`ProtocolMismatch`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import (
    BadRequestError,
    MendaCloudAPIError,
    MendaError,
    UnsupportedVersionError,
    error_class,
)
from .records import Record

VERSION = 1
#: Longest request line the daemon reads.
MAX_LINE = 64 * 1024
#: Longest reply line a client reads: room for a full, capped ``status``.
MAX_REPLY = 4 * 1024 * 1024
HEARTBEAT = 0.5
ENV_PREFIX = "MENDA_"
#: Variables that only steer the shim itself; they do not decide an identity.
SHIM_ONLY = frozenset({"MENDA_CREDD", "MENDA_CREDD_SOCKET"})
OPS = ("get", "ping", "status")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def identity_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of a caller's environment that decides which identity answers."""
    picked = {
        key: value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in SHIM_ONLY
    }
    if "HOME" in env:
        picked["HOME"] = env["HOME"]
    return picked


# -- framing --------------------------------------------------------------------------------


def frame(message: Mapping[str, Any]) -> bytes:
    """One JSON object as one line."""
    return _dumps(message).encode("utf-8") + b"\n"


class LineTooLong(Exception):
    """A line (or the start of one) past the reader's limit: the peer is not speaking to us."""


def take_line(buffer: bytes, limit: int) -> tuple[bytes | None, bytes]:
    """The first complete line in ``buffer`` (without its newline) and the rest after it.

    ``(None, buffer)`` while no line is complete. Raises LineTooLong when the first line,
    complete or not, is longer than ``limit`` bytes.
    """
    newline = buffer.find(b"\n")
    if newline < 0:
        if len(buffer) > limit:
            raise LineTooLong
        return None, buffer
    if newline > limit:
        raise LineTooLong
    return buffer[:newline], buffer[newline + 1 :]


# -- requests -------------------------------------------------------------------------------


class GetRequest(Record):
    """A token for ``service``, as the caller whose identity ``env`` describes."""

    __slots__ = ("env", "service", "username")
    _hidden = ("env",)
    service: str
    username: str | None
    env: Mapping[str, str]
    op = "get"

    def __init__(self, service: str, username: str | None, env: Mapping[str, str]) -> None:
        self._set(service=service, username=username, env=env)


class PingRequest(Record):
    """Who answers here: pid and versions (``start``'s "already running", ``stop``)."""

    __slots__ = ()
    op = "ping"


class StatusRequest(Record):
    """What the daemon holds, bounded (``menda-credd status``)."""

    __slots__ = ()
    op = "status"


Request = GetRequest | PingRequest | StatusRequest


def get_request(service: str, username: str | None, env: Mapping[str, str]) -> GetRequest:
    """The ``get`` a shim sends: only the part of ``env`` that decides the identity."""
    return GetRequest(service, username, identity_env(env))


def encode_request(request: Request) -> bytes:
    if isinstance(request, GetRequest):
        return frame(
            {
                "v": VERSION,
                "op": "get",
                "service": request.service,
                "username": request.username,
                "env": dict(request.env),
            }
        )
    return frame({"v": VERSION, "op": request.op})


def decode_request(line: bytes) -> Request:
    """The request on one line; raises BadRequestError or UnsupportedVersionError."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequestError("request is not JSON") from None
    if not isinstance(message, dict):
        raise BadRequestError("request must be a JSON object")
    version = message.get("v")
    if type(version) is not int:
        raise BadRequestError(
            f"request has no integer protocol version 'v'; this daemon speaks v{VERSION}"
        )
    if version != VERSION:
        raise UnsupportedVersionError(
            f"unsupported protocol version v{version}; this daemon speaks v{VERSION}"
        )
    op = message.get("op")
    if op == "get":
        return _decode_get(message)
    if op == "ping":
        return PingRequest()
    if op == "status":
        return StatusRequest()
    shown = op[:40] if isinstance(op, str) else type(op).__name__
    raise BadRequestError(f"unknown op {shown!r}; expected get, ping or status")


def _decode_get(message: dict[str, Any]) -> GetRequest:
    service = message.get("service")
    username = message.get("username")
    env = message.get("env", {})
    if not isinstance(service, str):
        raise BadRequestError("service must be a string")
    if username is not None and not isinstance(username, str):
        raise BadRequestError("username must be a string or null")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise BadRequestError("env must be an object of strings")
    return GetRequest(service, username, env)


# -- replies --------------------------------------------------------------------------------


class Heartbeat(Record):
    """Still working on a ``get``: keep waiting."""

    __slots__ = ()


class TokenReply(Record):
    __slots__ = ("expires_at", "password", "username")
    _hidden = ("password",)
    username: str
    password: str
    expires_at: float | None

    def __init__(self, username: str, password: str, expires_at: float | None) -> None:
        self._set(username=username, password=password, expires_at=expires_at)


class NotOurs(Record):
    """Not a CodeArtifact service of ours (or another user name): ``password`` null."""

    __slots__ = ()


class ErrorReply(Record):
    """The typed error in-process resolution would have raised (or the daemon's own)."""

    __slots__ = ("error",)
    error: MendaError

    def __init__(self, error: MendaError) -> None:
        self._set(error=error)


class PingReply(Record):
    __slots__ = ("pid", "protocol", "version")
    pid: int
    version: str  # the daemon's package version
    protocol: int  # the protocol version it speaks

    def __init__(self, pid: int, version: str, protocol: int) -> None:
        self._set(pid=pid, version=version, protocol=protocol)


class StatusReply(Record):
    __slots__ = ("status",)
    _hidden = ("status",)
    status: dict[str, Any]

    def __init__(self, status: dict[str, Any]) -> None:
        self._set(status=status)


Reply = Heartbeat | TokenReply | NotOurs | ErrorReply | PingReply | StatusReply


class ProtocolMismatch(Exception):
    """A reply this side cannot read; ``reason`` is safe to log (never the line itself).

    ``peer_version`` is the protocol version the reply claimed and ``peer_package`` the
    package version it named (a ping reply names it in every version), when they did.
    """

    def __init__(
        self, reason: str, peer_version: int | None = None, peer_package: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.peer_version = peer_version
        self.peer_package = peer_package


def error_to_wire(error: MendaError) -> dict[str, Any]:
    """The JSON-safe form of ``error`` the daemon sends to the shim."""
    return {
        "kind": error.kind,
        "message": error.message,
        "status_code": getattr(error, "status_code", None),
    }


def error_from_wire(data: Mapping[str, Any]) -> MendaError:
    """Rebuild the typed error the daemon reported; unknown kinds become MendaError."""
    cls = error_class(data.get("kind"))
    message = str(data.get("message", "menda-credd reported an error"))
    if issubclass(cls, MendaCloudAPIError):
        status = data.get("status_code")
        return cls(message, status if type(status) is int else None)
    return cls(message)


def encode_reply(reply: Reply) -> bytes:
    """One reply line. The daemon keeps the lines of hot answers instead of re-encoding."""
    if isinstance(reply, TokenReply):
        return frame(
            {
                "v": VERSION,
                "ok": True,
                "username": reply.username,
                "password": reply.password,
                "expires_at": reply.expires_at,
            }
        )
    if isinstance(reply, ErrorReply):
        return frame({"v": VERSION, "ok": False, "error": error_to_wire(reply.error)})
    if isinstance(reply, NotOurs):
        return NOT_OURS_LINE
    if isinstance(reply, Heartbeat):
        return HEARTBEAT_LINE
    if isinstance(reply, PingReply):
        return frame(
            {
                "v": VERSION,
                "ok": True,
                "pid": reply.pid,
                "version": reply.version,
                "protocol": reply.protocol,
            }
        )
    return frame({"v": VERSION, "ok": True, "status": reply.status})


def error_line(error: MendaError) -> bytes:
    return encode_reply(ErrorReply(error))


HEARTBEAT_LINE = frame({"v": VERSION, "wait": True})
NOT_OURS_LINE = frame({"v": VERSION, "ok": True, "password": None})


def decode_reply(line: bytes, op: str) -> Reply:
    """The reply to a request of ``op`` on one line; raises ProtocolMismatch."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolMismatch("the daemon's answer is not JSON") from None
    return reply_from_message(message, op)


def reply_from_message(message: object, op: str) -> Reply:
    """The reply a decoded JSON value carries, for a request of ``op``."""
    if not isinstance(message, dict):
        raise ProtocolMismatch("the daemon's answer is not a JSON object")
    version = message.get("v")
    if type(version) is not int or version != VERSION:
        peer = version if type(version) is int else None
        package = message.get("version")
        raise ProtocolMismatch(
            f"the daemon speaks protocol v{peer if peer is not None else '?'}; "
            f"this client speaks v{VERSION}",
            peer,
            package if isinstance(package, str) else None,
        )
    if message.get("ok") is False:
        error = message.get("error")
        return ErrorReply(error_from_wire(error if isinstance(error, dict) else {}))
    if op == "get":
        if message.get("wait") is True:
            return Heartbeat()
        if message.get("ok") is True and "password" in message:
            password = message["password"]
            if password is None:
                return NotOurs()
            username = message.get("username", "aws")
            expires_at = message.get("expires_at")
            if isinstance(password, str) and password and isinstance(username, str):
                return TokenReply(
                    username, password, expires_at if _is_number(expires_at) else None
                )
    elif op == "ping" and message.get("ok") is True:
        pid, version_text = message.get("pid"), message.get("version")
        if type(pid) is int and pid > 0:
            protocol = message.get("protocol", VERSION)
            return PingReply(
                pid,
                version_text if isinstance(version_text, str) else "unknown",
                protocol if type(protocol) is int else VERSION,
            )
    elif op == "status" and message.get("ok") is True:
        status = message.get("status")
        if isinstance(status, dict):
            return StatusReply(status)
    raise ProtocolMismatch(f"the daemon's answer to {op!r} is not one this client knows")


def _is_number(value: object) -> bool:
    return type(value) in (int, float)
