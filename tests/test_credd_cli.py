"""The menda-credd command line, its life cycle and its service-manager integration."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from menda_credd import service
from menda_keyring.daemon_client import round_trip
from menda_keyring.daemon_protocol import Reply, TokenReply, get_request
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, base_env, m2m_env
from tests.support.procs import credd, keyring_get
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if os.path.exists("/usr/bin/systemd-analyze") else None
)


# -- service files ---------------------------------------------------------------------------


def test_repository_service_files_are_the_rendered_templates() -> None:
    assert (REPO / "systemd" / "menda-credd.service").read_text() == service.service_unit(
        service.REPO_PROGRAM
    )
    assert (REPO / "systemd" / "menda-credd.socket").read_text() == service.socket_unit()
    assert (REPO / "launchd" / "com.menda.credd.plist").read_bytes() == service.launchd_plist(
        service.REPO_PLIST_PROGRAM, service.REPO_PLIST_LOG
    )


def test_units_say_what_the_issue_asks() -> None:
    unit = (REPO / "systemd" / "menda-credd.service").read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=-%h/.menda",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ):
        assert line in unit.splitlines()
    assert any(
        ln.startswith("ExecStart=") and ln.endswith(" start --foreground")
        for ln in unit.splitlines()
    )
    sock = (REPO / "systemd" / "menda-credd.socket").read_text().splitlines()
    for line in ("ListenStream=%t/menda/credd.sock", "SocketMode=0600", "DirectoryMode=0700"):
        assert line in sock


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    # verify insists that ExecStart's binary exists: render for this interpreter.
    (tmp_path / "menda-credd.service").write_text(service.service_unit(service.current_program()))
    (tmp_path / "menda-credd.socket").write_text(service.socket_unit())
    runtime_dir = tmp_path / "rt"
    runtime_dir.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    for mode in (["--user"], []):
        result = subprocess.run(
            [SYSTEMD_ANALYZE, "verify", *mode, "menda-credd.service", "menda-credd.socket"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        complaints = [ln for ln in result.stderr.splitlines() if "menda-credd" in ln]
        assert not complaints, complaints


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a missing ExecStart binary is reported."""
    broken = service.service_unit(("/nonexistent/menda-credd",))
    (tmp_path / "menda-credd.service").write_text(broken)
    (tmp_path / "menda-credd.socket").write_text(service.socket_unit())
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "menda-credd.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 or "menda-credd" in result.stderr


def test_launchd_plist_loads_and_runs_the_daemon_in_the_foreground() -> None:
    with open(REPO / "launchd" / "com.menda.credd.plist", "rb") as fh:
        data = plistlib.load(fh)
    assert data["Label"] == "com.menda.credd"
    assert data["ProgramArguments"][-2:] == ["start", "--foreground"]
    assert data["RunAtLoad"] is True and data["KeepAlive"] is True
    assert data["StandardOutPath"] and data["StandardErrorPath"]
    rendered = plistlib.loads(service.launchd_plist(service.current_program(), "/x.log"))
    assert rendered["ProgramArguments"] == [
        sys.executable,
        "-m",
        "menda_credd",
        "start",
        "--foreground",
    ]


def test_install_service_dry_run_prints_and_touches_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home)
    result = credd("install-service", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert list(home.iterdir()) == []
    out = result.stdout
    if sys.platform == "darwin":
        assert "launchctl bootstrap" in out
    else:
        unit_path = home / ".config" / "systemd" / "user" / "menda-credd.service"
        assert f"# would write {unit_path}" in out
        assert f"ExecStart={sys.executable} -m menda_credd start --foreground" in out
        assert "ListenStream=%t/menda/credd.sock" in out
        assert "# would run: systemctl --user enable --now menda-credd.socket" in out
    removal = credd("uninstall-service", "--dry-run", env=env)
    assert removal.returncode == 0
    assert "# would remove" in removal.stdout
    assert list(home.iterdir()) == []


# -- life cycle ------------------------------------------------------------------------------


def test_a_second_daemon_never_steals_a_live_socket(home: Path, sockdir: Path) -> None:
    env = base_env(home)
    with Daemon(env, sockdir / "c.sock") as first:
        before = os.lstat(first.socket).st_ino
        second = credd("start", "--foreground", "--socket", first.socket, env=env, timeout=60)
        assert second.returncode == 0
        assert second.stdout.strip() == f"menda-credd already running (pid {first.pid})"
        detached = credd("start", "--socket", first.socket, env=env)
        assert detached.stdout.strip() == f"menda-credd already running (pid {first.pid})"
        assert os.lstat(first.socket).st_ino == before
        assert first.status()["pid"] == first.pid
    assert first.proc is not None and first.proc.returncode == 0
    assert not os.path.exists(first.socket), "SIGTERM removes the socket"


def test_a_stale_socket_file_is_replaced(home: Path, sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # bound, never listening, closed: a socket file nobody serves
    assert os.path.exists(path)
    with Daemon(base_env(home), path) as daemon:
        assert daemon.status()["pid"] == daemon.pid
    assert "removing stale socket" in daemon.log()


def test_a_socket_folder_open_to_others_is_refused(home: Path, sockdir: Path) -> None:
    sockdir.chmod(0o755)
    result = credd("start", "--foreground", "--socket", str(sockdir / "c.sock"), env=base_env(home))
    assert result.returncode == 1
    assert "open to group or others" in result.stderr
    assert not (sockdir / "c.sock").exists()


def test_sigterm_finishes_requests_in_flight_then_exits_0(
    cloud: FakeMendaCloud,
    home: Path,
    sockdir: Path,
) -> None:
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))
    daemon = Daemon(env, env["MENDA_CREDD_SOCKET"]).start()
    cloud.inject("registry", delay=2.0)
    answers: list[Reply] = []
    worker = threading.Thread(
        target=lambda: answers.append(
            round_trip(daemon.socket, get_request(CA_URL, "aws", env), 30.0)
        )
    )
    worker.start()
    wait_until(lambda: cloud.counts()["registry"] == 1, what="the exchange to be under way")
    os.kill(daemon.pid, signal.SIGTERM)
    worker.join(30)
    assert daemon.proc is not None and daemon.proc.wait(30) == 0
    assert answers and isinstance(answers[0], TokenReply), answers
    assert cloud.is_valid_registry_token(answers[0].password)
    assert not os.path.exists(daemon.socket)
    # Nothing was written to disk but the machine token in the shared cache.
    assert CA_URL not in (home / ".menda" / "tokens" / "cache" / ".token").read_text()
    assert answers[0].password not in (home / ".menda" / "tokens" / "cache" / ".token").read_text()


def test_status_human_output_and_idle_timeout_from_the_environment(
    cloud: FakeMendaCloud,
    home: Path,
    sockdir: Path,
) -> None:
    env = m2m_env(
        home, cloud, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"), MENDA_CREDD_IDLE_TIMEOUT="90m"
    )
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        assert keyring_get(env).returncode == 0
        human = credd("status", env=env)
        assert human.returncode == 0
        assert f"running (pid {daemon.pid})" in human.stdout
        assert "idle timeout: 90m" in human.stdout
        assert "env client ci-bot (m2m)" in human.stdout
        assert "menda-private-058264169513 (eu-west-1)" in human.stdout
        status = json.loads(credd("status", "--json", env=env).stdout)
        assert status["idle_timeout"] == 5400
        assert status["socket"] == daemon.socket
        assert status["entries"][0]["state"] == "valid"
    gone = credd("status", "--json", env=env)
    assert gone.returncode == 3
    assert json.loads(gone.stdout)["running"] is False


# -- systemd socket activation and readiness -------------------------------------------------


ACTIVATE = """
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.executable, [sys.executable, "-m", "menda_credd", "start", "--foreground"])
"""


def test_socket_activation_and_sd_notify(
    cloud: FakeMendaCloud,
    home: Path,
    sockdir: Path,
) -> None:
    path = str(sockdir / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sockdir / "notify"))
    notify.settimeout(30)
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path), NOTIFY_SOCKET=str(sockdir / "notify"))
    # The daemon must take fd 3, not bind its own: point its own rule somewhere else.
    daemon_env = {**env, "MENDA_CREDD_SOCKET": str(sockdir / "elsewhere.sock")}
    log = open(sockdir / "activated.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, str(listener.fileno())],
        env=daemon_env,
        pass_fds=(listener.fileno(),),
        stdout=log,
        stderr=log,
    )
    try:
        listener.close()  # the daemon holds it now
        ready = notify.recv(4096).decode()
        assert "READY=1" in ready.split("\n")
        assert f"MAINPID={proc.pid}" in ready
        result = keyring_get(env)
        assert result.returncode == 0, result.stderr
        assert cloud.is_valid_registry_token(result.stdout.strip())
        status = Daemon(env, path).status()
        assert status["pid"] == proc.pid
        assert status["socket_activated"] is True
        assert status["counters"]["requests"] == 1
        assert not (sockdir / "elsewhere.sock").exists()
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert proc.wait(30) == 0
        assert os.path.exists(path), "the service manager's socket is left to the manager"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
        notify.close()


def test_detached_start_makes_private_folders_under_a_loose_umask(
    home: Path,
    sockdir: Path,
) -> None:
    env = base_env(home, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))
    started = subprocess.run(
        [str(Path(sys.executable).parent / "menda-credd"), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        umask=0o022,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        for folder in (home / ".menda", home / ".menda" / "run"):
            assert (folder.stat().st_mode & 0o777) == 0o700, folder
        assert ((home / ".menda" / "run" / "credd.log").stat().st_mode & 0o777) == 0o600
    finally:
        assert credd("stop", env=env).returncode == 0
