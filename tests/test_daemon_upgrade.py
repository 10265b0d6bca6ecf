"""A shim and a daemon of different releases (``uv tool upgrade`` while a daemon runs).

A small fake daemon (a real Unix socket server in a thread of this process, so the
peer and folder checks pass as for our own daemon) answers in a protocol version we do
not speak, refuses our version, or says it is busy: the keyring CLI still gets a valid
token, in process, at once, with nothing on stderr. ``menda-credd status`` and ``start``
name the other release and say how to switch.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from menda_credd import __version__ as CLI_VERSION
from menda_keyring.daemon_client import IDLE_TIMEOUT
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, m2m_env
from tests.support.procs import credd, keyring_get

Answer = Callable[[dict], dict]


class FakeDaemon:
    """Answers each request line with ``answer(request)``; records what happened when."""

    def __init__(self, path: str, answer: Answer) -> None:
        self.path = path
        self.answer = answer
        self.requests: list[dict] = []
        #: (monotonic time the last answer was sent, time the client closed), per connection
        self.closes: list[tuple[float, float]] = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(16)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._server.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buffer = b""
        sent_at = 0.0
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    self.closes.append((sent_at, time.monotonic()))
                    return
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    self.requests.append(request)
                    conn.sendall(json.dumps(self.answer(request)).encode() + b"\n")
                    sent_at = time.monotonic()


def newer_release(request: dict) -> dict:
    """A daemon of a future release: every reply in protocol v99."""
    return {"v": 99, "ok": True, "pid": os.getpid(), "version": "9.0.0", "password": "bogus"}


def refuses_our_version(request: dict) -> dict:
    error = {"kind": "unsupported_version", "message": "this daemon speaks v0", "status_code": None}
    return {"v": 1, "ok": False, "error": error}


def busy(request: dict) -> dict:
    error = {"kind": "daemon_busy", "message": "saturated", "status_code": None}
    return {"v": 1, "ok": False, "error": error}


def older_release_same_protocol(request: dict) -> dict:
    """A daemon of an older release that speaks our protocol (no 'protocol' field yet)."""
    if request.get("op") == "ping":
        return {"v": 1, "ok": True, "pid": os.getpid(), "version": "0.0.1"}
    if request.get("op") == "status":
        status = {
            "pid": os.getpid(),
            "version": "0.0.1",
            "uptime": 5,
            "socket": "s",
            "idle_timeout": 60,
            "counters": {},
            "entries": [],
        }
        return {"v": 1, "ok": True, "status": status}
    return {"v": 1, "ok": True, "password": None}


@pytest.mark.parametrize("answer", [newer_release, refuses_our_version, busy])
def test_keyring_gets_a_token_in_process_at_once_and_says_nothing(
    cloud: FakeMendaCloud, home: Path, sockdir: Path, answer: Answer
) -> None:
    path = str(sockdir / "credd.sock")
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=path)
    with FakeDaemon(path, answer) as fake:
        result = keyring_get(env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.strip()
    assert token != "bogus" and cloud.is_valid_registry_token(token)
    assert cloud.counts()["registry_ok"] == 1  # resolved in process
    assert [r.get("op") for r in fake.requests] == ["get"]
    # The shim hung up right after the answer: it did not wait out a read timeout.
    ((sent, closed),) = fake.closes
    assert closed - sent < IDLE_TIMEOUT


def test_the_fallback_reason_is_logged_at_debug_level_only(
    cloud: FakeMendaCloud,
    home: Path,
    sockdir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from menda_keyring import shim
    from menda_keyring.urls import parse_codeartifact_service

    path = str(sockdir / "credd.sock")
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=path)
    target = parse_codeartifact_service(CA_URL)
    assert target is not None
    caplog.set_level(logging.DEBUG)
    with FakeDaemon(path, newer_release):
        token = shim.fetch_token(CA_URL, target, env)
    assert cloud.is_valid_registry_token(token)
    ours = [r for r in caplog.records if r.name.startswith("menda_keyring")]
    assert any("protocol v99" in r.getMessage() for r in ours), [r.getMessage() for r in ours]
    assert all(r.levelno <= logging.DEBUG for r in ours)


def test_status_and_start_name_a_daemon_of_another_protocol_and_how_to_switch(
    home: Path, sockdir: Path
) -> None:
    path = str(sockdir / "credd.sock")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "MENDA_CREDD_SOCKET": path}
    with FakeDaemon(path, newer_release) as fake:
        status = credd("status", env=env)
        status_json = credd("status", "--json", env=env)
        start = credd("start", env=env)
    assert status.returncode == 0, status.stderr
    assert "menda-credd 9.0.0" in status.stdout and "v99" in status.stdout
    assert "menda-credd stop && menda-credd start" in status.stdout
    report = json.loads(status_json.stdout)
    assert report["running"] is True and report["compatible"] is False
    assert (report["version"], report["protocol"]) == ("9.0.0", 99)
    assert report["cli_version"] == CLI_VERSION
    assert start.returncode == 0, start.stderr
    assert f"menda-credd 9.0.0 (protocol v99) already running (pid {os.getpid()})" in start.stdout
    assert "menda-credd stop && menda-credd start" in start.stdout
    assert not [r for r in fake.requests if r.get("op") not in ("ping", "status")]
    assert len(os.listdir(sockdir)) == 1  # no second daemon was started beside it


def test_status_and_start_name_an_older_release_of_the_same_protocol(
    home: Path, sockdir: Path
) -> None:
    path = str(sockdir / "credd.sock")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "MENDA_CREDD_SOCKET": path}
    with FakeDaemon(path, older_release_same_protocol):
        status = credd("status", env=env)
        start = credd("start", env=env)
    assert status.returncode == 0, status.stderr
    first = status.stdout.splitlines()[0]
    assert first.startswith("menda-credd 0.0.1 running")
    assert f"this menda-credd is {CLI_VERSION}" in first
    assert start.returncode == 0, start.stderr
    assert f"menda-credd 0.0.1 already running (pid {os.getpid()})" in start.stdout
    assert f"this is menda-credd {CLI_VERSION}" in start.stdout
    assert "menda-credd stop && menda-credd start" in start.stdout
