"""Ask the local menda-credd for a token; say plainly when it cannot answer.

Standard library only: this is the warm path of every ``keyring get``. A daemon
that is absent, refuses, closes early, or goes quiet for longer than
``IDLE_TIMEOUT`` (it sends heartbeats while it works) is "unavailable", and the
caller resolves in process instead, so a wedged daemon never hangs uv or pip.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Mapping

from .wire import MAX_LINE, VERSION, identity_env

CONNECT_TIMEOUT = 1.0
IDLE_TIMEOUT = 2.5
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
                raise DaemonUnavailable("the daemon stopped answering") from None
            except OSError as exc:
                raise DaemonUnavailable(f"lost the daemon: {exc.strerror or exc}") from None
            if not chunk:
                raise DaemonUnavailable("the daemon closed the connection before answering")
            buffer += chunk
            if len(buffer) > MAX_LINE:
                raise DaemonUnavailable("the daemon's answer is too large")
    finally:
        sock.close()


def _parse(raw: bytes) -> dict:
    try:
        reply = json.loads(raw)
    except ValueError:
        raise DaemonUnavailable("the daemon's answer is not JSON") from None
    if not isinstance(reply, dict) or reply.get("v") != VERSION:
        raise DaemonUnavailable("the daemon speaks another protocol version")
    return reply
