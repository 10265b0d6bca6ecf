"""Shared helpers of the hardening tests (``tests/test_hardening_*.py``).

Self-contained on purpose (only ``tests.conftest`` and ``tests.fakes``): a real
``menda-credd start --foreground`` subprocess, the real ``keyring`` CLI, raw socket
clients, and assertions on typed errors. Every wait polls a real condition with a
generous deadline; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from menda_credd import runtime
from menda_keyring.daemon_client import DaemonUnavailable
from tests import credd_helpers
from tests.conftest import BIN, CA_URL, write_profile, write_user_token
from tests.conftest import base_env as clean_env

PYTHON = sys.executable
KEYRING = str(BIN / "keyring")
MENDA_CREDD = str(BIN / "menda-credd")
IS_ROOT = os.geteuid() == 0

__all__ = [
    "CA_URL",
    "Daemon",
    "KEYRING",
    "MENDA_CREDD",
    "Run",
    "clean_env",
    "closed_port",
    "credd_cli",
    "error_line",
    "keyring_get",
    "private_tmpdir",
    "raw_request",
    "sentinel",
    "wait_until",
    "write_profile",
    "write_user_token",
]


def sentinel(kind: str = "SECRET") -> str:
    """A unique, greppable secret for leak checks."""
    return f"SENTINEL-{kind}-{secrets.token_hex(8)}"


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


@contextlib.contextmanager
def private_tmpdir(prefix: str = "mhd-") -> Iterator[Path]:
    """A fresh 0700 folder with a short path under /tmp (``sun_path`` is small)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def closed_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the keyring CLI ----------------------------------------------------------------------


@dataclass
class Run:
    """One finished subprocess, with its wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def token(self) -> str:
        assert self.returncode == 0, self.describe()
        return self.stdout.strip()

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.elapsed:.2f} s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def _umask_preexec(umask: int | None) -> Callable[[], None] | None:
    if umask is None:
        return None

    def set_umask() -> None:
        os.umask(umask)

    return set_umask


def run(
    command: list[str], env: dict[str, str], timeout: float = 60.0, umask: int | None = None
) -> Run:
    start = time.monotonic()
    result = subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        preexec_fn=_umask_preexec(umask),  # noqa: PLW1509 - umask only, no threads touched
    )
    return Run(command, result.returncode, result.stdout, result.stderr, time.monotonic() - start)


def keyring_get(
    env: dict[str, str],
    service: str = CA_URL,
    username: str = "aws",
    timeout: float = 60.0,
    umask: int | None = None,
) -> Run:
    """The real ``keyring get SERVICE USERNAME``."""
    return run([KEYRING, "get", service, username], env, timeout, umask)


def credd_cli(*args: str, env: dict[str, str], timeout: float = 60.0) -> Run:
    """The real ``menda-credd`` console script."""
    return run([MENDA_CREDD, *args], env, timeout)


def error_line(stderr: str) -> str:
    """The last non-empty line of a traceback: ``module.Class: message``."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


CLI_PREFIX = "menda-keyring: "


def typed_error(stderr: str) -> tuple[str, str]:
    """``(class name, message)`` of the error the keyring CLI reported, or ``("", line)``.

    Under the keyring CLI the backend prints ``menda-keyring: Class: message``; a
    traceback ends in ``menda_keyring.errors.Class: message``.
    """
    line = error_line(stderr)
    if line.startswith(CLI_PREFIX):
        head, _, message = line[len(CLI_PREFIX) :].partition(": ")
        return head, message
    if line.startswith("menda_keyring."):
        head, _, message = line.partition(": ")
        return head.rsplit(".", 1)[-1], message
    return "", line


def error_class(stderr: str) -> str:
    """The bare class name of the error the keyring CLI reported ("" when none)."""
    return typed_error(stderr)[0]


# -- raw socket clients -------------------------------------------------------------------


def raw_request(
    path: str | Path, data: bytes, timeout: float = 15.0, half_close: bool = True
) -> bytes:
    """Send ``data``, optionally half-close, and return all the daemon sent before it closed."""
    return credd_helpers.raw_exchange(path, data, timeout, half_close)


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


# -- the daemon ---------------------------------------------------------------------------


class Daemon(credd_helpers.Daemon):
    """The daemon harness of the daemon tests, with what the hardening tests probe."""

    def __init__(
        self,
        env: dict[str, str],
        socket_path: str | Path,
        *args: str,
        umask: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        folder = Path(socket_path).parent
        log_path = log_path or folder.with_name(folder.name + "-credd.log")
        super().__init__(env, socket_path, *args, umask=umask, log_path=log_path)

    def start(self, timeout: float = 30.0) -> Daemon:
        super().start(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        return runtime.status(self.socket, timeout)

    def cli_status_json(self) -> dict[str, Any]:
        """``menda-credd status --json``, as a user asks it."""
        result = credd_cli("status", "--json", "--socket", self.socket, env=self.env)
        assert result.returncode == 0, result.describe()
        return json.loads(result.stdout)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def answers(self) -> bool:
        try:
            return runtime.ping_pid(self.socket, timeout=2.0) == self.pid
        except DaemonUnavailable:
            return False

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)
