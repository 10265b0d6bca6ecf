"""Ask the local menda-credd for a token; say plainly when it cannot answer.

Standard library only: this is the warm path of every ``keyring get``. A daemon
that is absent, refuses, closes early, or goes quiet for longer than
``IDLE_TIMEOUT`` (it sends heartbeats while it works) is "unavailable", and the
caller resolves in process instead, so a wedged daemon never hangs uv or pip.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

from .daemon_protocol import (
    MAX_LINE,
    MAX_REPLY,
    VERSION,
    ErrorReply,
    Heartbeat,
    LineTooLong,
    ProtocolMismatch,
    Reply,
    Request,
    decode_reply,
    encode_request,
    get_request,
    take_line,
)
from .errors import DaemonProtocolError, UnsupportedVersionError
from .peercred import Peer, accepted, peer_credentials
from .private_dir import describe_uid, folder_problem

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.5
#: How long a silent daemon that is runnable but not running (starved of CPU by a
#: herd of installers, not stopped or blocked) may stay silent before we give up.
STARVED_PATIENCE = 12.0
#: The daemon applies the resolution ceiling itself; this is the shim's last resort.
DEFAULT_CEILING = 30.0


class DaemonUnavailable(Exception):
    """No usable answer from the daemon; ``reason`` says why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DaemonUntrusted(DaemonUnavailable):
    """Something listens (or could) at the socket path that is not ours: no byte was sent.

    Unlike a plain absence the user should hear of it: ``reason`` names the path and
    who owns it, and fits in one line.
    """

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"not using the daemon socket {path}: {why}")
        self.path = path
        self.why = why


def connect_checked(path: str, timeout: float = 1.0) -> tuple[socket.socket, Peer]:
    """A connection to the daemon at ``path``, made only if it is ours; nothing is sent.

    The socket's folder must be a real folder of ours closed to group and others (one
    ``lstat``), and the process that listens must run as us (one ``getsockopt``). Our own
    folder open to others but holding no socket is plain absence (silent); anything
    else is ``DaemonUntrusted``. No socket or nobody listening is ``DaemonUnavailable``.
    """
    uid = os.geteuid()
    folder = os.path.dirname(os.path.abspath(path))
    try:
        folder_stat = os.lstat(folder)
    except OSError:
        raise DaemonUnavailable(f"no daemon socket folder {folder}") from None
    problem = folder_problem(folder_stat, uid)
    if problem is not None:
        if folder_stat.st_uid == uid and not os.path.lexists(path):
            raise DaemonUnavailable(f"no daemon socket at {path} (and its folder {problem})")
        raise DaemonUntrusted(path, f"its folder {problem}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        peer = peer_credentials(sock)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, FileNotFoundError):
            raise DaemonUnavailable(f"no daemon socket at {path}") from None
        if isinstance(exc, ConnectionRefusedError):
            raise DaemonUnavailable(f"nobody listens on {path} (stale socket)") from None
        if isinstance(exc, OSError):
            reason = exc.strerror or type(exc).__name__
            raise DaemonUnavailable(f"cannot reach the daemon at {path}: {reason}") from None
        raise
    if not accepted(peer, uid):
        sock.close()
        who = "an unknown user" if peer.uid is None else describe_uid(peer.uid)
        raise DaemonUntrusted(path, f"it is served by {who}, not by you ({describe_uid(uid)})")
    return sock, peer


class DaemonSpeaksOtherVersion(DaemonUnavailable):
    """The daemon runs a release whose protocol version is not ours (an upgrade meanwhile).

    ``protocol`` and ``package`` are the daemon's versions where its reply named them.
    """

    def __init__(self, reason: str, protocol: int | None, package: str | None) -> None:
        super().__init__(reason)
        self.protocol = protocol
        self.package = package


def request_line(service: str, username: str | None, env: Mapping[str, str]) -> bytes:
    """The encoded ``get`` a shim sends (for callers that write raw bytes to the socket)."""
    return encode_request(get_request(service, username, env))


def total_timeout(env: Mapping[str, str]) -> float:
    """A little more than the resolution ceiling the daemon will apply for this caller."""
    try:
        ceiling = float(env.get("MENDA_KEYRING_TIMEOUT") or DEFAULT_CEILING)
    except ValueError:
        ceiling = DEFAULT_CEILING
    return min(max(ceiling, 1.0), 600.0) + 5.0


class _StaleConnection(Exception):
    """A kept connection the daemon has closed meanwhile (idle timeout, restart)."""


class Connection:
    """One checked connection to our daemon, reused by later calls of the same process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.owner = os.getpid()
        self.sock, self.peer = connect_checked(path, CONNECT_TIMEOUT)
        self.daemon_pid = self.peer.pid

    def ask(self, request: Request, total_timeout: float) -> Reply:
        """Send one request on this connection and return the final answer."""
        return _final(_converse(self, request, total_timeout, reused=False))

    def close(self) -> None:
        self.sock.close()


_kept: Connection | None = None
_kept_lock = threading.Lock()


def _take_kept(path: str) -> Connection | None:
    """The connection an earlier call left open, if it is ours to use (same socket, not forked)."""
    global _kept
    with _kept_lock:
        conn, _kept = _kept, None
    if conn is not None and (conn.path != path or conn.owner != os.getpid()):
        if conn.owner == os.getpid():
            conn.close()
        return None
    return conn


def _keep(conn: Connection) -> None:
    global _kept
    with _kept_lock:
        previous, _kept = _kept, conn
    if previous is not None and previous is not conn:
        previous.close()


def round_trip(path: str, request: Request, total_timeout: float) -> Reply:
    """Send one request and return the final answer, skipping heartbeats.

    Reuses the connection a previous call of this process left open (a library caller
    such as pip's import provider asks many times); a kept connection the daemon has
    closed meanwhile is replaced once, transparently. The daemon's own complaints about
    the request (``bad_request``, ``unsupported_version``, ``daemon_busy``) and replies in
    another protocol version are ``DaemonUnavailable``: the caller does without it.
    """
    kept = _take_kept(path)
    if kept is not None:
        try:
            reply = _converse(kept, request, total_timeout, reused=True)
        except _StaleConnection:
            kept.close()
        except BaseException:
            kept.close()
            raise
        else:
            _keep(kept)
            return _final(reply)
    conn = Connection(path)
    try:
        reply = _converse(conn, request, total_timeout, reused=False)
    except BaseException:
        conn.close()
        raise
    _keep(conn)
    return _final(reply)


def _final(reply: Reply) -> Reply:
    if isinstance(reply, ErrorReply) and isinstance(reply.error, DaemonProtocolError):
        if isinstance(reply.error, UnsupportedVersionError):
            raise DaemonSpeaksOtherVersion(
                f"the daemon does not speak protocol v{VERSION}", None, None
            )
        raise DaemonUnavailable(f"the daemon refused the request ({reply.error.kind})")
    return reply


def _converse(conn: Connection, request: Request, total_timeout: float, reused: bool) -> Reply:
    line = encode_request(request)
    if len(line) > MAX_LINE:
        raise DaemonUnavailable("request too large for the daemon")
    sock = conn.sock
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.sendall(line)
    except OSError as exc:
        if reused:
            raise _StaleConnection from None
        raise DaemonUnavailable(f"cannot talk to the daemon: {exc.strerror or exc}") from None
    end = time.monotonic() + total_timeout
    silent_since = time.monotonic()
    buffer = b""
    answered = False
    while True:
        while True:
            try:
                raw, buffer = take_line(buffer, MAX_REPLY)
            except LineTooLong:
                raise DaemonUnavailable("the daemon's answer is too large") from None
            if raw is None:
                break
            reply = _decode(raw, request.op)
            if not isinstance(reply, Heartbeat):
                if buffer:
                    raise DaemonUnavailable("the daemon sent more than one answer")
                return reply
        left = end - time.monotonic()
        if left <= 0:
            raise DaemonUnavailable("the daemon did not finish in time")
        sock.settimeout(min(IDLE_TIMEOUT, left))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            from .procfs import waiting_for_cpu  # only when the daemon goes quiet

            silent = time.monotonic() - silent_since
            if silent < STARVED_PATIENCE and waiting_for_cpu(conn.daemon_pid):
                continue
            raise DaemonUnavailable("the daemon stopped answering") from None
        except OSError as exc:
            if reused and not answered:
                raise _StaleConnection from None
            raise DaemonUnavailable(f"lost the daemon: {exc.strerror or exc}") from None
        if not chunk:
            if reused and not answered:
                raise _StaleConnection
            raise DaemonUnavailable("the daemon closed the connection before answering")
        answered = True
        silent_since = time.monotonic()
        buffer += chunk


def _decode(raw: bytes, op: str) -> Reply:
    try:
        return decode_reply(raw, op)
    except ProtocolMismatch as exc:
        if exc.peer_version is not None and exc.peer_version != VERSION:
            raise DaemonSpeaksOtherVersion(exc.reason, exc.peer_version, exc.peer_package) from None
        raise DaemonUnavailable(exc.reason) from None
