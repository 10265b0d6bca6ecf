"""Ask the local menda-credd for a token; say plainly when it cannot answer.

Standard library only: this is the warm path of every ``keyring get``. A daemon
that is absent, refuses, closes early, or goes quiet for longer than
``IDLE_TIMEOUT`` (it sends heartbeats while it works) is "unavailable", and the
caller resolves in process instead, so a wedged daemon never hangs uv or pip.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Mapping

from .wire import MAX_LINE, VERSION, identity_env

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


def request_line(service: str, username: str | None, env: Mapping[str, str]) -> bytes:
    message = {
        "v": VERSION,
        "op": "get",
        "service": service,
        "username": username,
        "env": identity_env(env),
    }
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def total_timeout(env: Mapping[str, str]) -> float:
    """A little more than the resolution ceiling the daemon will apply for this caller."""
    try:
        ceiling = float(env.get("MENDA_KEYRING_TIMEOUT") or DEFAULT_CEILING)
    except ValueError:
        ceiling = DEFAULT_CEILING
    return min(max(ceiling, 1.0), 600.0) + 5.0


def exchange(path: str, line: bytes, total_timeout: float) -> dict:
    """Send one request line and return the final answer, skipping heartbeats."""
    if len(line) > MAX_LINE:
        raise DaemonUnavailable("request too large for the daemon")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(path)
            sock.sendall(line)
        except FileNotFoundError:
            raise DaemonUnavailable(f"no daemon socket at {path}") from None
        except ConnectionRefusedError:
            raise DaemonUnavailable(f"nobody listens on {path} (stale socket)") from None
        except OSError as exc:
            raise DaemonUnavailable(
                f"cannot reach the daemon at {path}: {exc.strerror or exc}"
            ) from None
        end = time.monotonic() + total_timeout
        daemon_pid = _peer_pid(sock)
        silent_since = time.monotonic()
        buffer = b""
        while True:
            newline = buffer.find(b"\n")
            while newline >= 0:
                reply = _parse(buffer[:newline])
                buffer = buffer[newline + 1 :]
                if not reply.get("wait"):
                    return reply
                newline = buffer.find(b"\n")
            left = end - time.monotonic()
            if left <= 0:
                raise DaemonUnavailable("the daemon did not finish in time")
            sock.settimeout(min(IDLE_TIMEOUT, left))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                silent = time.monotonic() - silent_since
                if silent < STARVED_PATIENCE and _waiting_for_cpu(daemon_pid):
                    continue
                raise DaemonUnavailable("the daemon stopped answering") from None
            except OSError as exc:
                raise DaemonUnavailable(f"lost the daemon: {exc.strerror or exc}") from None
            if not chunk:
                raise DaemonUnavailable("the daemon closed the connection before answering")
            silent_since = time.monotonic()
            buffer += chunk
            if len(buffer) > MAX_LINE:
                raise DaemonUnavailable("the daemon's answer is too large")
    finally:
        sock.close()


def _peer_pid(sock: socket.socket) -> int | None:
    """The daemon's pid from the kernel (Linux ``SO_PEERCRED``), None elsewhere."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    except (OSError, struct.error):
        return None
    return pid or None


def _waiting_for_cpu(pid: int | None) -> bool:
    """True when a thread of the daemon is runnable (state R): silent because starved.

    Every thread counts: the event loop may be waiting for the GIL held by a worker
    thread that is itself waiting for a CPU. A stopped (T) or dead daemon, one whose
    threads all sleep, or one we cannot see, is not waited for.
    """
    if pid is None:
        return False
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat_file:
                fields = stat_file.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if fields and fields[0] == b"R":
            return True
    return False


def _parse(raw: bytes) -> dict:
    try:
        reply = json.loads(raw)
    except ValueError:
        raise DaemonUnavailable("the daemon's answer is not JSON") from None
    if not isinstance(reply, dict) or reply.get("v") != VERSION:
        raise DaemonUnavailable("the daemon speaks another protocol version")
    return reply
