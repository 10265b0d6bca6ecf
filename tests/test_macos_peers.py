"""macOS's peer check and socket place, on Linux: the system call substituted, nothing else.

``peercred.read_peer`` is the one seam: here it is macOS's reader (``darwin_peer``) fed by
a socket whose ``getsockopt`` answers as the macOS kernel would (``struct xucred``, a
``pid_t``), so that the real server and the real client make their decisions on those
answers over a real Unix socket.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from menda_credd import runtime
from menda_credd.broker import Broker
from menda_credd.server import CredServer
from menda_keyring import paths, peercred
from menda_keyring.daemon_client import DaemonUntrusted, connect_checked
from menda_keyring.peercred import Peer
from menda_keyring.private_dir import describe_uid
from tests.support.server import serving
from tests.support.sockets import closed_without_answer

pytestmark = pytest.mark.unit

UID = os.getuid()
REAL_DARWIN_USER_TEMP_DIR = paths.darwin_user_temp_dir


def xucred(
    uid: int, version: int = peercred.XUCRED_VERSION, groups: tuple[int, ...] = (20,)
) -> bytes:
    padded = (*groups, *([0] * (peercred.XUCRED_NGROUPS - len(groups))))
    return peercred.XUCRED.pack(version, uid, len(groups), *padded)


class DarwinKernel:
    """A socket's ``getsockopt`` as macOS answers it; records what was asked."""

    def __init__(self, cred: bytes | OSError, pid: bytes | OSError) -> None:
        self.cred, self.pid = cred, pid
        self.asked: list[tuple[int, int, int]] = []

    def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes:
        self.asked.append((level, option, buflen))
        key = (level, option)
        answer = {
            (peercred.SOL_LOCAL, peercred.LOCAL_PEERCRED): self.cred,
            (peercred.SOL_LOCAL, peercred.LOCAL_PEERPID): self.pid,
        }.get(key, OSError(92, "Protocol not available"))
        if isinstance(answer, OSError):
            raise answer
        return answer[:buflen]


# -- the layout, from the headers --------------------------------------------------------


def test_xucred_layout_is_the_headers() -> None:
    # u_int cr_version @0, uid_t cr_uid @4, short cr_ngroups @8 (+2 padding), gid_t[16] @12.
    assert peercred.XUCRED_SIZE == 76
    raw = xucred(501, groups=(20, 12))
    assert struct.unpack_from("@I", raw, 4) == (501,)
    assert struct.unpack_from("@h", raw, 8) == (2,)
    assert struct.unpack_from("@2I", raw, 12) == (20, 12)
    assert (peercred.SOL_LOCAL, peercred.LOCAL_PEERCRED, peercred.LOCAL_PEERPID) == (0, 1, 2)


@pytest.mark.parametrize(
    ("raw", "uid"),
    [
        (xucred(501), 501),
        (xucred(0), 0),
        (xucred(501)[:8], 501),  # cr_version and cr_uid are all that is read
        (xucred(501, version=1), None),  # a layout this code was not written for
        (xucred(0xFFFFFFFF), None),  # (uid_t)-1
        (xucred(501)[:7], None),
        (b"", None),
    ],
)
def test_what_an_xucred_says(raw: bytes, uid: int | None) -> None:
    assert peercred.parse_xucred(raw) == uid


def test_the_darwin_reader_asks_for_the_uid_then_the_pid() -> None:
    kernel = DarwinKernel(xucred(501), struct.pack("@i", 4321))
    assert peercred.darwin_peer(kernel) == Peer(4321, 501)
    assert kernel.asked == [(0, 1, 76), (0, 2, 4)]


def test_an_unreadable_pid_leaves_the_pid_unknown_but_the_uid_decides() -> None:
    assert peercred.darwin_peer(DarwinKernel(xucred(501), OSError(22, "x"))) == Peer(None, 501)
    assert peercred.darwin_peer(DarwinKernel(xucred(501), struct.pack("@i", 0))) == Peer(None, 501)


def test_an_unreadable_uid_is_an_unknown_peer_and_never_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(peercred, "read_peer", peercred.darwin_peer)
    failing = DarwinKernel(OSError(22, "Invalid argument"), struct.pack("@i", 4321))
    assert peercred.peer_credentials(failing) == peercred.UNKNOWN
    other_layout = DarwinKernel(xucred(UID, version=1), struct.pack("@i", 4321))
    assert peercred.peer_credentials(other_layout) == peercred.UNKNOWN
    assert not peercred.accepted(peercred.UNKNOWN, UID)


def test_which_peers_are_accepted() -> None:
    assert peercred.accepted(Peer(1, 501), 501)
    assert peercred.accepted(Peer(None, 501), 501)  # the uid decides, not the pid
    assert not peercred.accepted(Peer(1, 502), 501)
    assert not peercred.accepted(Peer(1, 0), 501)  # root is somebody else too
    assert not peercred.accepted(Peer(1, None), 501)
    assert not peercred.accepted(Peer(1, None), 0)


def test_each_system_gets_its_call() -> None:
    assert peercred.reader_for("linux", True) is peercred.linux_peer
    assert peercred.reader_for("darwin", False) is peercred.darwin_peer
    assert peercred.reader_for("freebsd14", False) is peercred.unknown_peer
    assert peercred.reader_for("freebsd14", False)(DarwinKernel(xucred(UID), b"")) == (None, None)
    # This machine is Linux: its real reader is the one in use.
    assert peercred.read_peer is peercred.linux_peer


# -- the real server and client, on macOS's answers ----------------------------------------


def as_darwin(cred: Callable[[], bytes | OSError], pid: int) -> Callable[[object], Peer]:
    """macOS's reader, for every socket of this process, with these kernel answers."""

    def read(_sock: object) -> Peer:
        return peercred.darwin_peer(DarwinKernel(cred(), struct.pack("@i", pid)))

    return read


async def _never(*_args: object) -> object:
    raise AssertionError("no upstream call expected")


@contextlib.contextmanager
def server_at(sockdir: Path) -> Iterator[tuple[str, Broker]]:
    path = str(sockdir / "s.sock")
    broker = Broker(_never)
    with serving(CredServer(broker, path), path):
        yield path, broker


def test_a_peer_the_kernel_says_is_us_is_served_both_ways(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peercred, "read_peer", as_darwin(lambda: xucred(UID), os.getpid()))
    with server_at(sockdir) as (path, broker):
        probe = runtime.probe_daemon(path, timeout=10)
        assert probe is not None and probe.answered
        assert probe.peer == Peer(os.getpid(), UID)
        assert probe.reported_pid == os.getpid()
        assert broker.counters["peer_rejections"] == 0


@pytest.mark.parametrize(
    "cred",
    [
        pytest.param(lambda: xucred(UID + 1), id="another-uid"),
        pytest.param(lambda: xucred(UID, version=1), id="unknown-layout"),
        pytest.param(lambda: OSError(22, "Invalid argument"), id="call-fails"),
    ],
)
def test_the_server_answers_nothing_to_a_peer_it_cannot_place(
    sockdir: Path, monkeypatch: pytest.MonkeyPatch, cred: Callable[[], bytes | OSError]
) -> None:
    with server_at(sockdir) as (path, broker):
        monkeypatch.setattr(peercred, "read_peer", as_darwin(cred, os.getpid()))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b'{"v":1,"op":"ping"}\n')
            assert closed_without_answer(sock), (
                "a peer the kernel does not vouch for gets no answer"
            )
        assert broker.counters["peer_rejections"] == 1


@pytest.mark.parametrize(
    ("cred", "who"),
    [
        (lambda: xucred(UID + 1), describe_uid(UID + 1)),
        (lambda: xucred(UID, version=1), "an unknown user"),
        (lambda: OSError(22, "Invalid argument"), "an unknown user"),
    ],
)
def test_the_client_sends_nothing_to_a_daemon_it_cannot_place(
    sockdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    cred: Callable[[], bytes | OSError],
    who: str,
) -> None:
    path = str(sockdir / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        monkeypatch.setattr(peercred, "read_peer", as_darwin(cred, 4321))
        with pytest.raises(DaemonUntrusted) as caught:
            connect_checked(path, timeout=10)
        assert f"it is served by {who}, not by you" in caught.value.reason
        accepted, _ = listener.accept()
        with accepted:
            accepted.settimeout(10)
            assert accepted.recv(100) == b"", "the client closed without sending anything"


# -- where the socket and the log live ------------------------------------------------------


@pytest.fixture(autouse=True)
def no_system_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """confstr answers nothing unless a test says what it answers (as off macOS)."""
    monkeypatch.setattr(paths, "darwin_user_temp_dir", lambda: None)


@pytest.fixture
def user_tmpdir(tmp_path: Path) -> Path:
    """A stand-in for macOS's per-user ``/var/folders/<xx>/<hash>/T/``: ours, 0700."""
    folder = tmp_path / "var" / "folders" / "zz" / "abc123" / "T"
    folder.mkdir(parents=True)
    folder.chmod(0o700)
    return folder


def test_on_macos_the_socket_is_in_the_users_tmpdir(user_tmpdir: Path, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "TMPDIR": f"{user_tmpdir}/"}  # macOS's ends in /
    assert paths.socket_path(env, UID, "darwin") == str(user_tmpdir / "menda" / "credd.sock")
    # Linux keeps its rule: TMPDIR is not per user there.
    assert paths.socket_path(env, UID, "linux") == str(
        tmp_path / "home" / ".menda" / "run" / "credd.sock"
    )


def test_xdg_runtime_dir_and_the_explicit_socket_still_come_first(
    user_tmpdir: Path, tmp_path: Path
) -> None:
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    env = {"HOME": str(tmp_path), "TMPDIR": str(user_tmpdir), "XDG_RUNTIME_DIR": str(runtime_dir)}
    assert paths.socket_path(env, UID, "darwin") == str(runtime_dir / "menda" / "credd.sock")
    env["MENDA_CREDD_SOCKET"] = "/somewhere/s.sock"
    assert paths.socket_path(env, UID, "darwin") == "/somewhere/s.sock"


def test_a_tmpdir_others_can_enter_or_not_ours_is_not_used(
    user_tmpdir: Path, tmp_path: Path
) -> None:
    home_socket = str(tmp_path / ".menda" / "run" / "credd.sock")
    env = {"HOME": str(tmp_path), "TMPDIR": str(user_tmpdir)}
    assert paths.socket_path(env, UID + 1, "darwin").startswith(str(tmp_path / ".menda"))
    user_tmpdir.chmod(0o755)
    assert paths.socket_path(env, UID, "darwin") == home_socket
    for tmpdir in ("relative/T", str(tmp_path / "missing"), ""):
        assert paths.socket_path({**env, "TMPDIR": tmpdir}, UID, "darwin") == home_socket


def test_without_a_usable_tmpdir_the_system_names_the_per_user_folder(
    user_tmpdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ssh session or a launchd job has no TMPDIR; a shell may set it to /tmp. Both
    # find the same per-user folder through confstr(_CS_DARWIN_USER_TEMP_DIR).
    monkeypatch.setattr(paths, "darwin_user_temp_dir", lambda: f"{user_tmpdir}/")
    expected = str(user_tmpdir / "menda" / "credd.sock")
    open_tmp = tmp_path / "tmp"
    open_tmp.mkdir()
    open_tmp.chmod(0o1777)
    for env in ({"HOME": str(tmp_path)}, {"HOME": str(tmp_path), "TMPDIR": str(open_tmp)}):
        assert paths.socket_path(env, UID, "darwin") == expected
    # Not ours, or open to others: the home folder's socket, as before.
    user_tmpdir.chmod(0o755)
    assert paths.socket_path({"HOME": str(tmp_path)}, UID, "darwin") == str(
        tmp_path / ".menda" / "run" / "credd.sock"
    )


def test_confstr_names_nothing_off_macos() -> None:
    assert paths.CS_DARWIN_USER_TEMP_DIR == 65537  # <unistd.h>
    assert REAL_DARWIN_USER_TEMP_DIR() is None  # this is Linux: no such name


def test_macos_sun_path_is_104_bytes(tmp_path: Path) -> None:
    # A TMPDIR whose socket path takes 104..107 bytes fits Linux's 108 but not macOS's 104.
    base = str(tmp_path)
    name_len = 105 - len(base) - len("/menda/credd.sock") - 1
    deep = tmp_path / ("d" * name_len)
    deep.mkdir(mode=0o700)
    env = {"HOME": str(tmp_path), "TMPDIR": str(deep)}
    candidate = str(deep / "menda" / "credd.sock")
    assert 104 <= len(os.fsencode(candidate)) < 108
    assert paths.fit_sun_path(candidate, UID, env, "linux") == candidate
    assert paths.socket_path(env, UID, "darwin") == f"/tmp/menda-credd-{UID}/credd.sock"


def test_macos_logs_go_where_console_looks(tmp_path: Path) -> None:
    assert paths.default_log_file(tmp_path, "darwin") == (
        tmp_path / "Library" / "Logs" / "menda-credd" / "credd.log"
    )
    assert paths.default_log_file(tmp_path, "linux") == tmp_path / ".menda" / "run" / "credd.log"
