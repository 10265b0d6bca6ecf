"""Raw clients of the daemon's socket, for tests that send what no real client would."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def raw_exchange(
    path: str | Path, data: bytes, timeout: float = 15.0, half_close: bool = True
) -> bytes:
    """Send raw bytes, optionally half-close, and return all the daemon sent before closing."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def reply_lines(raw: bytes) -> list[dict[str, Any]]:
    """Every newline-terminated JSON reply in ``raw`` (a trailing partial line is an error)."""
    assert not raw or raw.endswith(b"\n"), f"reply does not end in a newline: {raw[-200:]!r}"
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the other end has closed (EOF or reset); reads and drops any data."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except (BlockingIOError, TimeoutError):
        return False


def closed_without_answer(sock: socket.socket) -> bool:
    """True when the other end closed (EOF or reset) before sending a byte."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
