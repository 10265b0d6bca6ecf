"""The one daemon harness: a real ``menda-credd start --foreground`` subprocess.

It runs with the environment it is given (HOME, identity, ...), listens on a short socket
path (sun_path is small), counts as started once the socket answers a ping from that very
process, and stops on SIGTERM with exit status 0. Every wait polls a real condition with
a generous bound. Requests travel through the product's own daemon client, so a change of
the wire protocol is made in the product and here nowhere else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from menda_credd import runtime
from menda_keyring.daemon_client import DaemonUnavailable
from menda_keyring.daemon_protocol import PingRequest, Reply, Request
from tests.support.env import PYTHON
from tests.support.procs import credd
from tests.support.waiting import wait_until


def ask(path: str | Path, request: Request, timeout: float = 10.0) -> Reply:
    """One request to the daemon at ``path``, as the product's client sends it."""
    return runtime.ask(str(path), request, timeout)


def daemon_reachable(path: str | Path) -> bool:
    """True when somebody answers a ping at ``path``."""
    try:
        ask(path, PingRequest(), timeout=2.0)
    except DaemonUnavailable:
        return False
    return True


class Daemon:
    """A real ``menda-credd start --foreground``; a context manager that stops it at exit.

    The log goes next to the socket's folder (the daemon creates that folder itself), or
    to ``log_path``.
    """

    def __init__(
        self,
        env: dict[str, str],
        socket_path: str | Path,
        *args: str,
        umask: int | None = None,
        log_path: Path | None = None,
        log_level: str = "debug",
    ) -> None:
        self.env = dict(env)
        self.env["MENDA_CREDD_SOCKET"] = str(socket_path)
        self.socket = str(socket_path)
        self.args = list(args)
        self.umask = umask
        self.log_level = log_level
        folder = Path(self.socket).parent
        self.log_path = log_path or folder.with_name(folder.name + "-credd.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the daemon was not started"
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Daemon:
        command = [PYTHON, "-m", "menda_credd", "start", "--foreground"]
        command += ["--log-level", self.log_level, "--socket", self.socket, *self.args]
        umask = self.umask
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=None if umask is None else lambda: os.umask(umask),
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
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

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def answers(self) -> bool:
        """True when this very process answers a ping on its socket."""
        try:
            return runtime.ping_pid(self.socket, timeout=2.0) == self.pid
        except DaemonUnavailable:
            return False

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        """The status the daemon reports over its socket."""
        return runtime.status(self.socket, timeout)

    def counters(self) -> dict[str, int]:
        return self.status()["counters"]

    def cli_status_json(self) -> dict[str, Any]:
        """``menda-credd status --json``, as a user asks it."""
        result = credd("status", "--json", "--socket", self.socket, env=self.env)
        assert result.returncode == 0, result.describe()
        return json.loads(result.stdout)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(20)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (after SIGCONT, should it be stopped); its exit status."""
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
