"""The shim's patience: a starved daemon is waited for, a stopped or wedged one is not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from menda_keyring.daemon_client import (
    IDLE_TIMEOUT,
    DaemonUnavailable,
    round_trip,
)
from menda_keyring.daemon_protocol import Reply, TokenReply, get_request
from menda_keyring.peercred import peer_credentials
from menda_keyring.procfs import waiting_for_cpu as _waiting_for_cpu
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, m2m_env
from tests.support.waiting import wait_until

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")


def state_of(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()[0]


def wait_for_state(pid: int, wanted: bytes, timeout: float = 10.0) -> None:
    wait_until(
        lambda: state_of(pid) == wanted,
        timeout,
        interval=0.01,
        what=f"process {pid} to reach state {wanted!r}",
    )


@linux_only
def test_runnable_means_waiting_for_cpu_and_stopped_does_not() -> None:
    spin = "print('spinning', flush=True)\nwhile True: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE)
    asleep = subprocess.Popen(["sleep", "60"])
    try:
        # Past its start-up (which reads files, and may sleep on them): only the loop left.
        assert busy.stdout is not None and busy.stdout.readline() == b"spinning\n"
        wait_for_state(busy.pid, b"R")
        wait_for_state(asleep.pid, b"S")
        assert _waiting_for_cpu(busy.pid)
        assert not _waiting_for_cpu(asleep.pid)
        os.kill(busy.pid, signal.SIGSTOP)
        wait_for_state(busy.pid, b"T")
        assert not _waiting_for_cpu(busy.pid)
    finally:
        busy.kill()
        asleep.kill()
        busy.wait()
        asleep.wait()
    assert not _waiting_for_cpu(None)
    assert not _waiting_for_cpu(busy.pid)  # gone


@linux_only
def test_peer_pid_is_the_listening_process(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        assert peer_credentials(client).pid == os.getpid()
    finally:
        client.close()
        server.close()


# A stand-in daemon: accepts one request, stays silent for SILENCE seconds either
# spinning on the CPU (runnable, like a daemon starved by a herd) or sleeping
# (like a wedged one), then answers.
SILENT_DAEMON = textwrap.dedent(
    """
    import json, socket, sys, time
    path, how, silence = sys.argv[1], sys.argv[2], float(sys.argv[3])
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    print("ready", flush=True)
    conn, _ = server.accept()
    conn.recv(65536)
    end = time.monotonic() + silence
    while time.monotonic() < end:
        if how == "sleep":
            time.sleep(end - time.monotonic())
    conn.sendall(json.dumps({"v": 1, "ok": True, "password": "late-answer"}).encode() + b"\\n")
    time.sleep(5)
    """
)


def ask_silent_daemon(tmp_path: Path, how: str, silence: float) -> tuple[Reply | str, float]:
    path = str(tmp_path / f"{how}.sock")
    daemon = subprocess.Popen(
        [sys.executable, "-c", SILENT_DAEMON, path, how, str(silence)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
        started = time.monotonic()
        try:
            answer: Reply | str = round_trip(path, get_request("svc", "aws", {}), 30)
        except DaemonUnavailable as exc:
            answer = exc.reason
        return answer, time.monotonic() - started
    finally:
        daemon.kill()
        daemon.wait()


@linux_only
def test_a_starved_daemon_is_waited_for(tmp_path: Path) -> None:
    answer, elapsed = ask_silent_daemon(tmp_path, "spin", IDLE_TIMEOUT + 2)
    assert answer == TokenReply("aws", "late-answer", None)
    assert elapsed >= IDLE_TIMEOUT


def test_a_silent_sleeping_daemon_is_given_up_on(tmp_path: Path) -> None:
    answer, elapsed = ask_silent_daemon(tmp_path, "sleep", IDLE_TIMEOUT + 5)
    assert answer == "the daemon stopped answering"
    assert elapsed < IDLE_TIMEOUT + 4


def test_a_library_caller_reuses_one_connection_and_survives_a_daemon_restart(
    cloud: FakeMendaCloud, home: Path, sockdir: Path
) -> None:
    from menda_keyring import daemon_client as client
    from menda_keyring.backend import fetch_token
    from menda_keyring.urls import parse_codeartifact_service

    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))
    target = parse_codeartifact_service(CA_URL)
    assert target is not None
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        before = daemon.counters()["connections"]
        tokens = {fetch_token(CA_URL, target, env) for _ in range(20)}
        assert len(tokens) == 1 and cloud.is_valid_registry_token(tokens.pop())
        counters = daemon.counters()
        # One connection for all twenty (the helpers' status probes may share it too);
        # without reuse there would be twenty more.
        assert counters["connections"] - before <= 1
        assert counters["requests"] == 20
        first_pid = daemon.pid
    assert client._kept is not None  # left open by the last call
    # The daemon is gone and a new one listens on the same path: the kept connection
    # is stale, and the next call reconnects once instead of resolving in process.
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        assert daemon.pid != first_pid
        assert cloud.is_valid_registry_token(fetch_token(CA_URL, target, env))
        assert daemon.counters()["requests"] == 1
    assert cloud.counts()["registry"] == 2
