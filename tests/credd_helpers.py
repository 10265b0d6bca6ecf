"""Helpers for the menda-credd tests: a real daemon subprocess, the real keyring CLI, the wire.

``Daemon`` runs ``python -m menda_credd start --foreground`` with a temporary
HOME and a short socket path (sun_path is small), waits until the socket
answers a ping from that very process, and stops it with SIGTERM, expecting
exit status 0. Nothing here sleeps to synchronise: every wait polls a real
condition with a generous deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from menda_credd import runtime
from menda_keyring.daemon_client import DaemonUnavailable
from menda_keyring.daemon_protocol import PingRequest
from tests.conftest import (  # noqa: F401 - re-exported for the daemon tests
    BIN,
    CA_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    base_env,
    m2m_env,
    write_profile,
    write_user_token,
)

__all__ = [
    "BIN",
    "CA_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "Daemon",
    "KEYRING",
    "MENDA_CREDD",
    "ask",
    "base_env",
    "error_of",
    "keyring_get",
    "m2m_env",
    "raw_exchange",
    "short_socket_dir",
    "sockdir",
    "wait_until",
    "write_profile",
    "write_user_token",
]

KEYRING = str(BIN / "keyring")
MENDA_CREDD = str(BIN / "menda-credd")
PYTHON = sys.executable


def wait_until(
    condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def short_socket_dir() -> Path:
    """A fresh 0700 folder with a path short enough for sun_path."""
    return Path(tempfile.mkdtemp(prefix="mcd-", dir="/tmp"))


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = short_socket_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ask(path: str | Path, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's status body (raises DaemonUnavailable when it does not answer)."""
    return runtime.status(str(path), timeout)


def raw_exchange(
    path: str | Path, data: bytes, timeout: float = 10.0, half_close: bool = True
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


def keyring_get(
    env: dict[str, str], service: str = CA_URL, username: str = "aws", timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KEYRING, "get", service, username],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def last_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


_ERROR = re.compile(r"(?:menda_keyring\.errors\.|menda-keyring: )(?P<cls>\w+): (?P<msg>.*)")


def error_of(stderr: str) -> tuple[str, str] | None:
    """(error class name, message) of the typed error keyring reported, however it prints it."""
    match = _ERROR.fullmatch(last_error_line(stderr).strip())
    return (match["cls"], match["msg"]) if match else None


class Daemon:
    """A real ``menda-credd start --foreground`` subprocess."""

    def __init__(
        self,
        env: dict[str, str],
        socket_path: str | Path,
        *args: str,
        umask: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.env = dict(env)
        self.env["MENDA_CREDD_SOCKET"] = str(socket_path)
        self.socket = str(socket_path)
        self.args = list(args)
        self.umask = umask
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or Path(self.socket).with_suffix(".log")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> Daemon:
        command = [PYTHON, "-m", "menda_credd", "start", "--foreground", "--log-level", "debug"]
        umask = self.umask
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, "--socket", self.socket, *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=None if umask is None else lambda: os.umask(umask),  # noqa: PLW1509
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            return runtime.ping_pid(self.socket, timeout=1.0) == self.proc.pid

        wait_until(ready, timeout, what="the daemon to answer a ping")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def status(self) -> dict[str, Any]:
        return runtime.status(self.socket, 10.0)

    def counters(self) -> dict[str, int]:
        return self.status()["counters"]

    def stop(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"daemon did not stop on SIGTERM:\n{self.log()}") from None

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()


def daemon_reachable(path: str | Path) -> bool:
    try:
        runtime.ask(str(path), PingRequest(), timeout=2.0)
    except DaemonUnavailable:
        return False
    return True


def credd(
    *args: str, env: dict[str, str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run the real ``menda-credd`` console script."""
    return subprocess.run(
        [MENDA_CREDD, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def env_for(home: Path, socket_path: str | Path, **extra: str) -> dict[str, str]:
    return base_env(home, MENDA_CREDD_SOCKET=str(socket_path), **extra)


def m2m_env_for(home: Path, cloud: Any, socket_path: str | Path, **extra: str) -> dict[str, str]:
    return m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(socket_path), **extra)


def os_env_without_menda() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MENDA_")}
