"""The daemon's OS rules: private socket folder and socket, the life lock, peer checks,
systemd's LISTEN_FDS and NOTIFY_SOCKET, and connection limits on a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from menda_credd import runtime
from menda_credd.broker import Broker
from menda_credd.server import CredServer
from menda_keyring import peercred
from menda_keyring.daemon_client import DaemonUntrusted, request_line
from menda_keyring.daemon_protocol import PingReply, PingRequest
from tests.support.env import CA_URL, short_tmpdir
from tests.support.server import serve_in_thread
from tests.support.sockets import closed_without_answer
from tests.support.waiting import wait_until

IS_ROOT = os.geteuid() == 0


# -- socket folder -------------------------------------------------------------------------


def test_socket_dir_is_created_0700_by_mkdir_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "credd.sock"
    old = os.umask(0o002)
    try:
        folder = runtime.prepare_socket_dir(str(target))
    finally:
        os.umask(old)
    assert folder == str(tmp_path / "a" / "b")
    for path in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700


def test_socket_dir_open_to_group_or_others_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o750)
    with pytest.raises(runtime.SocketDirError, match="open to group or others"):
        runtime.prepare_socket_dir(str(folder / "credd.sock"))
    folder.chmod(0o701)
    with pytest.raises(runtime.SocketDirError):
        runtime.check_private_dir(str(folder), os.getuid())
    folder.chmod(0o700)
    runtime.check_private_dir(str(folder), os.getuid())


def test_socket_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    # As the owner we pass; claiming to be someone else, the same folder is refused.
    runtime.check_private_dir(str(folder), os.getuid())
    with pytest.raises(runtime.SocketDirError, match="belongs to uid"):
        runtime.check_private_dir(str(folder), os.getuid() + 4242)
    if IS_ROOT:
        os.chown(folder, 65534, 65534)
        with pytest.raises(runtime.SocketDirError, match="belongs to uid 65534"):
            runtime.prepare_socket_dir(str(folder / "credd.sock"))


def test_socket_dir_symlink_or_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(runtime.SocketDirError, match="symbolic link"):
        runtime.check_private_dir(str(link), os.getuid())
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(runtime.SocketDirError, match="not a folder"):
        runtime.check_private_dir(str(afile), os.getuid())


def test_socket_is_0600_even_under_a_permissive_umask(sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    old = os.umask(0)
    try:
        sock = runtime.bind_private_socket(path)
    finally:
        os.umask(old)
    try:
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert os.umask(old) == old  # the umask was restored
    finally:
        sock.close()
    ident = runtime.socket_identity(path)
    runtime.remove_socket_if_ours(path, (0, 0))
    assert os.path.exists(path), "someone else's socket must not be removed"
    runtime.remove_socket_if_ours(path, ident)
    assert not os.path.exists(path)


def test_the_life_lock_admits_one_daemon(sockdir: Path) -> None:
    path = str(sockdir / "c.sock")
    first = runtime.acquire_daemon_lock(path)
    assert first is not None
    # flock locks belong to the open file: a second open in another process is refused.
    code = (
        "import sys; from menda_credd import runtime; "
        "sys.exit(0 if runtime.acquire_daemon_lock(sys.argv[1]) is None else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code, path], check=False).returncode == 0
    os.close(first)
    assert subprocess.run([sys.executable, "-c", code, path], check=False).returncode == 1
    assert stat.S_IMODE(os.stat(path + ".lock").st_mode) == 0o600


# -- peers ---------------------------------------------------------------------------------


def test_peer_credentials_are_parsed() -> None:
    assert peercred.parse_ucred(struct.pack("3i", 123, 1000, 100)) == (123, 1000)
    assert peercred.parse_ucred(struct.pack("3i", 0, -1, -1)) == (None, None)
    assert peercred.parse_xucred(struct.pack("=2Ih", 0, 501, 1) + bytes(64)) == 501


def test_peer_uid_of_a_real_connection_is_ours() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peercred.peer_credentials(left).uid == os.getuid()
        assert peercred.peer_credentials(left) == (os.getpid(), os.getuid())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert peercred.peer_credentials(udp).uid is None


async def _never(*_args: object) -> object:
    raise AssertionError("no upstream call expected")


def test_a_connection_from_another_uid_is_closed_and_counted(sockdir: Path) -> None:
    path = str(sockdir / "s.sock")
    broker = Broker(_never)
    # The server serves a uid that is not ours: our own connection is the foreign peer.
    server = CredServer(broker, path, uid=os.getuid() + 4242)
    stop = serve_in_thread(server, path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b'{"v":1,"op":"ping"}\n')
            assert closed_without_answer(sock), "a foreign peer must get no answer at all"
        assert broker.counters["peer_rejections"] == 1
    finally:
        stop()


@pytest.mark.skipif(
    not IS_ROOT or not os.access("/usr/bin/python3", os.X_OK),
    reason="needs root (to connect as another uid) and /usr/bin/python3",
)
def test_a_real_other_user_is_rejected() -> None:
    with short_tmpdir() as open_dir:
        check_a_real_other_user_is_rejected(open_dir)


def check_a_real_other_user_is_rejected(open_dir: Path) -> None:
    open_dir.chmod(0o777)  # so that a foreign peer reaches the socket
    path = str(open_dir / "s.sock")
    broker = Broker(_never)
    server = CredServer(broker, path)
    stop = serve_in_thread(server, path)
    try:
        os.chmod(path, 0o777)  # noqa: S103
        result = subprocess.run(
            ["/usr/bin/python3", "-c", FOREIGN_PEER, path],
            user=65534,
            group=65534,
            check=False,
            timeout=30,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert broker.counters["peer_rejections"] == 1
        # Our own client refuses a folder open to others; closed again, it is served.
        with pytest.raises(DaemonUntrusted, match="open to group or others"):
            runtime.ask(path, PingRequest())
        open_dir.chmod(0o700)
        pong = runtime.ask(path, PingRequest())
        assert isinstance(pong, PingReply) and pong.pid == os.getpid()
    finally:
        stop()


FOREIGN_PEER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"v":1,"op":"ping"}\\n')
    data = s.recv(100)
except (BrokenPipeError, ConnectionResetError):
    data = b""
print(data)
sys.exit(0 if data == b"" else 2)
"""


def _ping(sock: socket.socket) -> bool:
    sock.sendall(b'{"v":1,"op":"ping"}\n')
    return b'"pid"' in sock.recv(1000)


def test_at_the_cap_the_longest_idle_connection_makes_room(sockdir: Path) -> None:
    path = str(sockdir / "s.sock")
    broker = Broker(_never)
    server = CredServer(broker, path, max_connections=2, read_timeout=30)
    stop = serve_in_thread(server, path)
    socks = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            assert _ping(s)
            socks.append(s)
        oldest, younger = socks
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as newcomer:
            newcomer.settimeout(10)
            newcomer.connect(path)
            assert _ping(newcomer), "a new client is served, not refused"
            assert closed_without_answer(oldest), "the longest-idle connection was closed"
            assert _ping(younger)
        assert broker.counters["connections_evicted"] == 1
        assert broker.counters["connections_refused"] == 1  # closed because of the cap
    finally:
        for s in socks:
            s.close()
        stop()


def test_at_the_cap_with_every_connection_busy_a_newcomer_is_closed(
    sockdir: Path,
    tmp_path: Path,
) -> None:
    path = str(sockdir / "s.sock")

    async def hung_upstream(request: object, timeout: float) -> object:
        await asyncio.sleep(3600)  # menda-cloud never answers
        raise AssertionError("unreachable")

    broker = Broker(hung_upstream)
    server = CredServer(broker, path, max_connections=2, read_timeout=30)
    stop = serve_in_thread(server, path)
    env = {
        "HOME": str(tmp_path),
        "MENDA_CLIENT_ID": "c",
        "MENDA_CLIENT_SECRET": "s",
        "MENDA_HOST": "http://127.0.0.1:9",
    }
    line = request_line(CA_URL, "aws", env)
    socks = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            s.sendall(line)
            assert s.recv(1000).startswith(b'{"v":1,"wait":true}'), "busy: heartbeats flow"
            socks.append(s)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as newcomer:
            newcomer.settimeout(10)
            newcomer.connect(path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                newcomer.sendall(b'{"v":1,"op":"ping"}\n')
            assert closed_without_answer(newcomer)
        assert broker.counters["connections_refused"] == 1
        assert broker.counters["connections_evicted"] == 0
    finally:
        for s in socks:
            s.close()
        stop()


def test_a_client_that_never_reads_is_dropped(sockdir: Path) -> None:
    path = str(sockdir / "s.sock")
    server = CredServer(Broker(_never), path, read_timeout=0.5)
    stop = serve_in_thread(server, path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hog:
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hog.settimeout(0.2)
            hog.connect(path)
            sent = 0
            with contextlib.suppress(TimeoutError, OSError):
                for _ in range(200_000):  # pipeline requests, read nothing
                    hog.sendall(b'{"v":1,"op":"status"}\n' * 64)
                    sent += 1
            assert sent > 0
            wait_until(lambda: not server.connections, timeout=20, what="the hog to be dropped")
    finally:
        stop()


def test_an_idle_connection_is_closed_after_the_read_timeout(sockdir: Path) -> None:
    path = str(sockdir / "s.sock")
    server = CredServer(Broker(_never), path, read_timeout=0.3)
    stop = serve_in_thread(server, path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(path)
            sock.sendall(b'{"v":1,')  # half a request, then silence
            assert closed_without_answer(sock)
    finally:
        stop()


def test_a_busy_connection_outlives_the_read_timeout_and_then_idles_out(
    sockdir: Path,
) -> None:
    """One timer per connection, re-armed: only a read lasting the whole timeout ends it."""
    path = str(sockdir / "s.sock")
    server = CredServer(Broker(_never), path, read_timeout=0.5)
    stop = serve_in_thread(server, path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(20)
            sock.connect(path)
            end = time.monotonic() + 2.0  # four read timeouts
            answers = 0
            while time.monotonic() < end:
                sock.sendall(b'{"v":1,"op":"ping"}\n')
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(4096)
                    assert chunk, "closed while in use"
                    reply += chunk
                assert json.loads(reply)["ok"] is True
                last_answer = time.monotonic()
                answers += 1
                time.sleep(0.2)
            assert answers >= 5
            assert closed_without_answer(sock)
            # Idle from the last answer: closed only after a whole read timeout.
            assert 0.45 < time.monotonic() - last_answer < 10
        wait_until(lambda: not server.connections, what="the connection to be forgotten")
    finally:
        stop()


# -- systemd ---------------------------------------------------------------------------------


def test_sd_notify_reaches_path_and_abstract_sockets(sockdir: Path) -> None:
    path = str(sockdir / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.settimeout(5)
        assert runtime.sd_notify("READY=1", {"NOTIFY_SOCKET": path})
        assert receiver.recv(100) == b"READY=1"
    name = f"menda-credd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5)
        assert runtime.sd_notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
        assert receiver.recv(100) == b"STOPPING=1"
    assert not runtime.sd_notify("READY=1", {})
    assert not runtime.sd_notify("READY=1", {"NOTIFY_SOCKET": str(sockdir / "nobody")})


def test_listen_fds_for_another_pid_are_ignored_and_unset() -> None:
    env = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x", "A": "b"}
    assert runtime.inherited_socket(env) is None
    assert env == {"A": "b"}
    env = {"LISTEN_PID": "junk", "LISTEN_FDS": "1"}
    assert runtime.inherited_socket(env) is None
    assert env == {}
    assert runtime.inherited_socket({}) is None


def test_core_dumps_are_disabled_in_a_child() -> None:
    code = (
        "import resource; from menda_credd import runtime; runtime.disable_core_dumps(); "
        "print(resource.getrlimit(resource.RLIMIT_CORE)); "
        "import ctypes, sys; libc = ctypes.CDLL(None); "
        "print(libc.prctl(3, 0, 0, 0, 0) if sys.platform.startswith('linux') else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:2] == ["(0,", "0)"]
    assert out[2] == "0"  # PR_GET_DUMPABLE
