"""The daemon's contact with the operating system: its socket, lock, peers and supervisor.

Standard library only. Every rule here is a plain function so tests can call it:
the socket folder is created ``0700`` by ``mkdir`` itself and refused when it
belongs to someone else or is open to group/others; the socket is bound under
umask 0177 and verified ``0600``; a flock on ``<socket>.lock`` is held for the
daemon's life so a second daemon never steals a live socket; peers are checked
with SO_PEERCRED (Linux) or LOCAL_PEERCRED (macOS); systemd socket activation
(``LISTEN_FDS``) and readiness (``NOTIFY_SOCKET``) are spoken natively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import resource
import socket
import stat
import struct
import sys
from collections.abc import MutableMapping

from menda_keyring.daemon_client import DaemonUnavailable, round_trip

log = logging.getLogger("menda_credd")

SD_LISTEN_FDS_START = 3
#: macOS <sys/un.h>: SOL_LOCAL and LOCAL_PEERCRED; struct xucred starts {u_int version; uid_t uid}.
SOL_LOCAL = 0
LOCAL_PEERCRED = 0x001
XUCRED_SIZE = 76
PR_SET_DUMPABLE = 4


class SocketDirError(Exception):
    """The socket's folder (or the socket) is not private to this user: refuse to serve."""


# -- socket folder and socket -------------------------------------------------------------


def check_private_dir(folder: str, uid: int) -> None:
    """Refuse a folder that is a symlink, not a folder, not ours, or open to group/others."""
    try:
        st = os.lstat(folder)
    except OSError as exc:
        raise SocketDirError(f"cannot inspect socket folder {folder}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise SocketDirError(f"socket folder {folder} is a symbolic link; refusing to use it")
    if not stat.S_ISDIR(st.st_mode):
        raise SocketDirError(f"socket folder {folder} is not a folder")
    if st.st_uid != uid:
        raise SocketDirError(
            f"socket folder {folder} belongs to uid {st.st_uid}, not to uid {uid}; refusing it"
        )
    if st.st_mode & 0o077:
        raise SocketDirError(
            f"socket folder {folder} has mode {stat.S_IMODE(st.st_mode):04o}, open to group or "
            f"others; refusing it (chmod 700 {folder}, or remove it)"
        )


def make_private_dirs(folder: str) -> None:
    """Create ``folder`` and any missing parents, each by ``mkdir`` with mode 0700.

    Never ``chmod`` afterwards: a folder that already exists is left as it is (and
    checked by the caller where it matters). The umask can only take bits away.
    """
    missing = []
    current = folder
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)


def prepare_socket_dir(socket_file: str, uid: int | None = None) -> str:
    """Create the socket's folder (``mkdir`` mode 0700, parents too) and check it is private."""
    uid = os.getuid() if uid is None else uid
    folder = os.path.dirname(os.path.abspath(socket_file))
    make_private_dirs(folder)
    check_private_dir(folder, uid)
    return folder


def bind_private_socket(path: str, uid: int | None = None, backlog: int = 128) -> socket.socket:
    """Bind and listen on ``path`` under umask 0177, then verify it is ours and 0600."""
    uid = os.getuid() if uid is None else uid
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o600:
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise SocketDirError(
                f"socket {path} came out with mode {stat.S_IMODE(st.st_mode):04o} "
                f"owner {st.st_uid}; expected 0600 owned by {uid}"
            )
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_socket_if_ours(path: str, ident: tuple[int, int] | None) -> None:
    """Unlink ``path`` only if it is still the socket we bound (not a successor's)."""
    if ident is not None and socket_identity(path) == ident:
        with contextlib.suppress(OSError):
            os.unlink(path)


def lock_path(socket_file: str) -> str:
    return socket_file + ".lock"


def acquire_daemon_lock(socket_file: str) -> int | None:
    """Take the exclusive flock held for the daemon's life; None when another daemon has it."""
    fd = os.open(
        lock_path(socket_file), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return None
        raise
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def lock_holder(socket_file: str) -> int | None:
    """The pid in the life lock while a daemon holds it (answering or not), else None."""
    try:
        fd = os.open(lock_path(socket_file), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            data = os.pread(fd, 32, 0)  # held: by a live daemon
        else:
            return None  # free (closing the fd releases it again)
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


# -- talking to a daemon (the CLI, and start's "is somebody there?") ----------------------


def ask(path: str, message: dict, timeout: float = 3.0) -> dict:
    """One request to the daemon at ``path``; raises DaemonUnavailable."""
    line = json.dumps({"v": 1, **message}, separators=(",", ":")).encode() + b"\n"
    return round_trip(path, line, timeout)


def ping_pid(path: str, timeout: float = 3.0) -> int | None:
    """The pid of the daemon answering at ``path``, or None when nobody answers."""
    try:
        reply = ask(path, {"op": "ping"}, timeout)
    except DaemonUnavailable:
        return None
    pid = reply.get("pid")
    return pid if reply.get("ok") and isinstance(pid, int) else None


def somebody_listens(path: str) -> bool:
    """True when a connect to ``path`` succeeds (a live socket, whoever holds it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


# -- peers ----------------------------------------------------------------------------------


def parse_peercred(raw: bytes) -> int:
    """The uid in a Linux ``struct ucred`` (pid, uid, gid as three ints)."""
    _pid, uid, _gid = struct.unpack("3i", raw[: struct.calcsize("3i")])
    return uid  # -1 (no credentials) never equals a real uid


def parse_xucred(raw: bytes) -> int:
    """The uid in a macOS ``struct xucred`` (u_int cr_version, uid_t cr_uid, ...)."""
    _version, uid = struct.unpack_from("=2I", raw)
    return uid


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, or None."""
    try:
        if hasattr(socket, "SO_PEERCRED"):
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            uid = parse_peercred(raw)
            return uid if uid >= 0 else None
        if sys.platform == "darwin":
            return parse_xucred(sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE))
    except (OSError, struct.error):
        return None
    return None


# -- systemd ----------------------------------------------------------------------------------


def inherited_socket(env: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_FDS``/``LISTEN_PID``), or None.

    The variables are removed from the environment in every case (sd_listen_fds(1)).
    """
    env = os.environ if env is None else env
    listen_pid = env.pop("LISTEN_PID", None)
    listen_fds = env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_FDNAMES", None)
    if not listen_pid or not listen_fds:
        return None
    try:
        if int(listen_pid) != os.getpid() or int(listen_fds) < 1:
            return None
    except ValueError:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise SocketDirError("the inherited fd 3 is not a Unix stream socket")
    sock.set_inheritable(False)
    return sock


def sd_notify(state: str, env: MutableMapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``NOTIFY_SOCKET``; False when there is none."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "@/":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc.strerror)
        return False
    return True


# -- hardening ----------------------------------------------------------------------------------


def disable_core_dumps() -> None:
    """No core file may hold a token: RLIMIT_CORE 0 and, on Linux, not dumpable."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
