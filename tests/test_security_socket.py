"""Security of the daemon socket: the shim and ``menda-credd`` trust only a daemon of ours.

A fake daemon run by another user (``nobody``, from a root test) waits at the socket
path, in the ``/tmp`` short-path fallback, or behind a socket moved into our own
folder; it logs every connection and every byte it receives. The caller must send it
nothing, still get a valid token in process from the fake menda-cloud, and see one
line on stderr naming the path and its owner. ``menda-credd stop`` facing a fake that
names a foreign pid kills nothing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from menda_credd import runtime
from menda_keyring.paths import SUN_PATH_MAX, fit_sun_path, socket_path
from menda_keyring.peercred import Peer
from menda_keyring.private_dir import folder_problem
from menda_keyring.procfs import pid_alive
from menda_keyring.urls import parse_codeartifact_service
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, IS_ROOT, m2m_env, short_tmpdir
from tests.support.procs import credd, keyring_get
from tests.support.waiting import wait_until

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534
ATTACKER_TOKEN = "ATTACKER-TOKEN-0f3e"


def _has_nobody() -> bool:
    try:
        return pwd.getpwuid(NOBODY).pw_name == "nobody"
    except KeyError:
        return False


needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root to run the attacker as nobody")
needs_nobody = pytest.mark.skipif(not _has_nobody(), reason="no user 'nobody' (uid 65534)")
needs_system_python = pytest.mark.skipif(
    not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"needs {SYSTEM_PYTHON} (readable by nobody)"
)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc")

#: A fake daemon: logs each connection and every byte it gets, answers like a daemon
#: would (a token for "get", a foreign pid for "ping", a status) to anyone who asks.
FAKE_DAEMON = r"""
import json, os, socket, sys
path, folder, named_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o777)
srv.listen(16)
with open(os.path.join(folder, "ready"), "w") as f:
    f.write(str(os.getpid()))
connects = open(os.path.join(folder, "connects"), "ab", buffering=0)
received = open(os.path.join(folder, "received"), "ab", buffering=0)
reply = {"v": 1, "ok": True, "pid": named_pid, "username": "aws",
         "password": "ATTACKER_TOKEN", "expires_at": 2000000000,
         "status": {"pid": named_pid, "version": "9.9", "entries": [], "counters": {}}}
while True:
    conn, _ = srv.accept()
    connects.write(b"connect\n")
    conn.settimeout(10)
    try:
        data = conn.recv(65536)
        if data:
            received.write(data)
            conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass
    conn.close()
""".replace("ATTACKER_TOKEN", ATTACKER_TOKEN)


@dataclass
class Fake:
    proc: subprocess.Popen[bytes]
    socket: Path
    folder: Path

    def connects(self) -> int:
        return _read(self.folder / "connects").count(b"connect\n")

    def received(self) -> bytes:
        return _read(self.folder / "received")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


@contextlib.contextmanager
def fake_daemon(
    socket_file: Path, named_pid: int, as_nobody: bool, log_folder: Path | None = None
) -> Iterator[Fake]:
    """Run the fake at ``socket_file`` (as nobody or as us) until the block ends."""
    log_folder = socket_file.parent if log_folder is None else log_folder
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_nobody else {}
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", FAKE_DAEMON, str(socket_file), str(log_folder), str(named_pid)],
        stdin=subprocess.DEVNULL,
        cwd="/",
        **user,  # type: ignore[arg-type]
    )
    try:
        wait_until(lambda: (log_folder / "ready").exists() or proc.poll() is not None, 20)
        assert proc.poll() is None, "the fake daemon did not start"
        yield Fake(proc, socket_file, log_folder)
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def sleeper(as_nobody: bool) -> Iterator[subprocess.Popen[bytes]]:
    """A bystander process whose pid the fake names; it must survive ``stop``."""
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if as_nobody else {}
    proc = subprocess.Popen(["sleep", "300"], cwd="/", **user)  # type: ignore[arg-type]
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def shared_tmp() -> Iterator[Path]:
    """A short folder under /tmp that nobody may traverse (the attacker's folders go inside)."""
    with short_tmpdir("mss-") as path:
        path.chmod(0o755)
        yield path


def attacker_folder(parent: Path, name: str = "atk") -> Path:
    folder = parent / name
    folder.mkdir()
    folder.chmod(0o777)
    os.chown(folder, NOBODY, NOBODY)
    return folder


@contextlib.contextmanager
def attack() -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """A shared folder, an attacker's folder of nobody in it, and a bystander of nobody."""
    with shared_tmp() as tmp, sleeper(as_nobody=True) as bystander:
        yield tmp, attacker_folder(tmp), bystander


def refusal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "not using the daemon socket" in line]


def assert_in_process_token(cloud: FakeMendaCloud, env: dict[str, str], path: Path) -> str:
    """``keyring get`` succeeds with a real token and says once why the socket was skipped."""
    result = keyring_get(env)
    assert result.returncode == 0, result.describe()
    token = result.stdout.strip()
    assert token != ATTACKER_TOKEN
    assert cloud.is_valid_registry_token(token), result.describe()
    lines = refusal_lines(result.stderr)
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith(f"menda-keyring: not using the daemon socket {path}: ")
    assert lines[0].endswith("; resolving in process")
    return lines[0]


# -- real processes of another uid --------------------------------------------------------


@needs_root
@needs_nobody
@needs_system_python
def test_a_foreign_daemon_at_the_socket_path_receives_nothing(
    cloud: FakeMendaCloud, home: Path
) -> None:
    with attack() as (_tmp, folder, bystander):
        path = folder / "credd.sock"
        env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path))
        with fake_daemon(path, bystander.pid, as_nobody=True) as fake:
            line = assert_in_process_token(cloud, env, path)
            assert "its folder belongs to uid 65534 (nobody), not to you" in line
            for command in (["status"], ["status", "--json"], ["start"], ["stop"]):
                answer = credd(*command, "--socket", str(path), env=env)
                assert answer.returncode == 1, answer.describe()
                assert f"not using the daemon socket {path}" in answer.stderr
                assert "already running" not in answer.stdout + answer.stderr
            foreground = credd("start", "--foreground", "--socket", str(path), env=env)
            assert foreground.returncode == 1, foreground.describe()
            assert "belongs to uid 65534 (nobody)" in foreground.stderr
            assert fake.connects() == 0, "a client connected to a folder that is not ours"
            assert fake.received() == b""
            assert pid_alive(bystander.pid) and pid_alive(fake.proc.pid)


@needs_root
@needs_nobody
@needs_system_python
def test_a_foreign_listener_moved_into_our_folder_is_refused_by_its_peer(
    cloud: FakeMendaCloud, home: Path
) -> None:
    with attack() as (tmp, folder, bystander):
        mine = tmp / "mine"
        mine.mkdir(mode=0o700)
        path = mine / "credd.sock"
        env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path))
        with fake_daemon(folder / "credd.sock", bystander.pid, as_nobody=True) as fake:
            # The bound socket keeps its listener when renamed: our folder passes the
            # folder check, so only the peer check stands between the fake and the secret.
            os.rename(folder / "credd.sock", path)
            line = assert_in_process_token(cloud, env, path)
            assert "it is served by uid 65534 (nobody), not by you" in line
            stop = credd("stop", "--socket", str(path), env=env)
            assert stop.returncode == 1, stop.describe()
            assert "served by uid 65534 (nobody)" in stop.stderr
            status = credd("status", "--socket", str(path), env=env)
            assert status.returncode == 1, status.describe()
            started = credd("start", "--socket", str(path), env=env)
            assert started.returncode == 1, started.describe()
            assert "already running" not in started.stdout
            assert fake.connects() >= 4, "each client reached the listener ..."
            assert fake.received() == b"", "... and sent it nothing"
            assert pid_alive(bystander.pid) and pid_alive(fake.proc.pid)


@needs_root
@needs_nobody
@needs_system_python
def test_the_tmp_fallback_made_first_by_another_user_is_never_used(
    cloud: FakeMendaCloud, tmp_path: Path
) -> None:
    fallback = Path(f"/tmp/menda-credd-{os.getuid()}")
    if os.path.lexists(fallback):
        pytest.skip(f"{fallback} exists already (a daemon of this machine may use it)")
    home = tmp_path / ("h" * SUN_PATH_MAX)
    home.mkdir()
    env = m2m_env(home, cloud)
    del env["MENDA_CREDD_SOCKET"]
    path = fallback / "credd.sock"
    assert socket_path(env) == str(path)
    with shared_tmp() as logs:
        os.chown(logs, NOBODY, NOBODY)
        try:
            fallback.mkdir()
            fallback.chmod(0o777)
            os.chown(fallback, NOBODY, NOBODY)
            with fake_daemon(path, os.getpid(), as_nobody=True, log_folder=logs) as fake:
                line = assert_in_process_token(cloud, env, path)
                assert "its folder belongs to uid 65534 (nobody)" in line
                daemon = credd("start", "--foreground", env=env, timeout=30)
                assert daemon.returncode == 1, daemon.describe()
                assert f"socket folder {fallback} belongs to uid 65534 (nobody)" in daemon.stderr
                assert "not starting" in daemon.stderr
                for command in ("start", "status", "stop"):
                    answer = credd(command, env=env)
                    assert answer.returncode == 1, answer.describe()
                    assert f"not using the daemon socket {path}" in answer.stderr
                assert fake.connects() == 0
                assert fake.received() == b""
                assert pid_alive(fake.proc.pid)
        finally:
            shutil.rmtree(fallback, ignore_errors=True)


@linux_only
@needs_system_python
@pytest.mark.parametrize("bystander_is_nobody", [False, True], ids=["own-pid", "foreign-uid"])
def test_stop_kills_nothing_when_the_daemon_names_a_foreign_pid(
    tmp_path: Path, home: Path, bystander_is_nobody: bool
) -> None:
    if bystander_is_nobody and not (IS_ROOT and _has_nobody()):
        pytest.skip("needs root and user nobody to start a process of another uid")
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    path = folder / "credd.sock"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    with sleeper(as_nobody=bystander_is_nobody) as bystander:
        # The fake runs as us: the peer check passes, and only the kernel's peer pid (the
        # fake itself, which is not menda-credd) could be signalled; the named pid never.
        with fake_daemon(path, bystander.pid, as_nobody=False) as fake:
            stop = credd("stop", "--socket", str(path), env=env)
            assert stop.returncode == 1, stop.describe()
            assert f"not stopping anything at {path}" in stop.stderr
            assert f"pid {fake.proc.pid} serving the socket is not menda-credd" in stop.stderr
            assert pid_alive(bystander.pid), "stop killed the pid the fake named"
            assert pid_alive(fake.proc.pid), "stop killed a process that is not menda-credd"
            assert fake.received().startswith(b'{"v":1,"op":"ping"}')


@needs_system_python
def test_a_group_writable_folder_of_our_own_is_refused(cloud: FakeMendaCloud, home: Path) -> None:
    folder = home / "run"
    folder.mkdir()
    path = folder / "credd.sock"
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path))
    with fake_daemon(path, os.getpid(), as_nobody=False, log_folder=home) as fake:
        folder.chmod(0o770)
        line = assert_in_process_token(cloud, env, path)
        assert "has mode 0770, open to group or others" in line
        status = credd("status", "--socket", str(path), env=env)
        assert status.returncode == 1, status.describe()
        assert fake.connects() == 0
        assert fake.received() == b""


def test_our_own_open_folder_without_a_socket_is_plain_absence(
    cloud: FakeMendaCloud, home: Path
) -> None:
    home.chmod(0o755)
    env = m2m_env(home, cloud)  # the socket path is in HOME, and nothing listens there
    result = keyring_get(env)
    assert result.returncode == 0, result.describe()
    assert cloud.is_valid_registry_token(result.stdout.strip())
    assert refusal_lines(result.stderr) == []


# -- the decisions, without processes -----------------------------------------------------


def _stat(tmp_path: Path, mode: int) -> os.stat_result:
    folder = tmp_path / f"d{mode:o}"
    folder.mkdir()
    folder.chmod(mode)
    return os.lstat(folder)


def test_folder_problem_accepts_only_a_private_folder_of_ours(tmp_path: Path) -> None:
    uid = os.geteuid()
    private = _stat(tmp_path, 0o700)
    assert folder_problem(private, uid) is None
    assert "has mode 0750" in str(folder_problem(_stat(tmp_path, 0o750), uid))
    assert "has mode 0702" in str(folder_problem(_stat(tmp_path, 0o702), uid))
    assert "not to you" in str(folder_problem(private, uid + 4242))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "d700")
    assert "symbolic link" in str(folder_problem(os.lstat(link), uid))
    (tmp_path / "file").write_text("x")
    assert "not a folder" in str(folder_problem(os.lstat(tmp_path / "file"), uid))


def test_stop_signals_only_the_kernel_peer_of_ours_that_is_menda_credd() -> None:
    credd = ["/usr/bin/python3", "-m", "menda_credd", "start", "--foreground"]
    ok = runtime.Probe(Peer(1234, 1000), 1234, answered=True)
    assert runtime.stop_refusal(ok, 1000, 1000, credd) is None
    wedged = runtime.Probe(Peer(1234, 1000), None, answered=False)
    assert runtime.stop_refusal(wedged, 1000, 1000, ["/home/u/.local/bin/menda-credd"]) is None
    assert runtime.stop_refusal(wedged, 1000, None, None) is None  # macOS: the peer uid decides
    named_other = runtime.Probe(Peer(1234, 1000), 999, answered=True)
    assert "says it is pid 999" in str(runtime.stop_refusal(named_other, 1000, 1000, credd))
    assert "not run as you" in str(runtime.stop_refusal(ok, 0, 0, credd))
    assert "belongs to uid 0" in str(runtime.stop_refusal(ok, 1000, 0, credd))
    assert "not menda-credd" in str(runtime.stop_refusal(ok, 1000, 1000, ["/bin/sleep", "9"]))
    unknown = runtime.Probe(Peer(None, 1000), 1234, answered=True)
    assert "does not say" in str(runtime.stop_refusal(unknown, 1000, 1000, credd))


def test_a_long_path_falls_back_to_the_runtime_dir_before_tmp(tmp_path: Path) -> None:
    long = str(tmp_path / ("x" * SUN_PATH_MAX) / "credd.sock")
    uid = os.getuid()
    runtime_dir = tmp_path / "rt"
    runtime_dir.mkdir(mode=0o700)
    assert fit_sun_path(long, uid, {"XDG_RUNTIME_DIR": str(runtime_dir)}) == str(
        runtime_dir / "menda-credd.sock"
    )
    assert fit_sun_path(long, uid, {}) == f"/tmp/menda-credd-{uid}/credd.sock"
    assert fit_sun_path(long, uid + 1, {"XDG_RUNTIME_DIR": str(runtime_dir)}) == (
        f"/tmp/menda-credd-{uid + 1}/credd.sock"
    )


def test_the_daemon_refuses_a_socket_folder_another_user_made_first(tmp_path: Path) -> None:
    folder = tmp_path / "menda-credd-x"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(runtime.SocketDirError, match="open to group or others"):
        runtime.prepare_socket_dir(str(folder / "credd.sock"))
    if IS_ROOT:
        os.chown(folder, NOBODY, NOBODY)
        with pytest.raises(runtime.SocketDirError, match="belongs to uid 65534"):
            runtime.prepare_socket_dir(str(folder / "credd.sock"))
    fresh = tmp_path / "fresh" / "run"
    old = os.umask(0)
    try:
        runtime.prepare_socket_dir(str(fresh / "credd.sock"))
    finally:
        os.umask(old)
    for made in (fresh.parent, fresh):
        assert os.lstat(made).st_mode & 0o777 == 0o700


def test_a_library_caller_hears_of_a_refused_socket_once(
    cloud: FakeMendaCloud, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from menda_keyring import backend, shim

    folder = home / "run"
    folder.mkdir(mode=0o700)
    path = folder / "credd.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(path))
    folder.chmod(0o770)
    target = parse_codeartifact_service(CA_URL)
    assert target is not None
    env = m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(path))
    try:
        tokens = [backend.fetch_token(CA_URL, target, env) for _ in range(3)]
    finally:
        bound.close()
        shim._warned.discard(str(path))  # the once-per-process memory lives in the shim
    assert all(cloud.is_valid_registry_token(token) for token in tokens)
    assert len(refusal_lines(capsys.readouterr().err)) == 1
