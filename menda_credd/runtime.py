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
import logging
import os
import resource
import socket
import stat
import sys
from collections.abc import MutableMapping
from typing import Any

from menda_keyring import private_dir, procfs
from menda_keyring.daemon_client import (
    Connection,
    DaemonSpeaksOtherVersion,
    DaemonUnavailable,
    DaemonUntrusted,
    connect_checked,
    round_trip,
)
from menda_keyring.daemon_protocol import (
    VERSION,
    PingReply,
    PingRequest,
    Reply,
    Request,
    StatusReply,
    StatusRequest,
)
from menda_keyring.fileutil import try_flock
from menda_keyring.peercred import Peer

log = logging.getLogger("menda_credd")

SD_LISTEN_FDS_START = 3
PR_SET_DUMPABLE = 4

__all__ = ["DaemonUntrusted", "Peer"]


class SocketDirError(Exception):
    """The socket's folder (or the socket) is not private to this user: refuse to serve."""


# -- socket folder and socket -------------------------------------------------------------


def check_private_dir(folder: str, uid: int, create: bool = False) -> None:
    """Refuse a folder that is a symlink, not a folder, not ours, or open to group/others.

    With ``create``, missing folders are made first (``mkdir`` 0700, each one verified).
    """
    try:
        if create:
            private_dir.make_private_dirs(folder, uid)
        private_dir.check_private_dir(folder, uid)
    except private_dir.NotPrivateError as exc:
        raise SocketDirError(f"socket folder {exc.folder} {exc.problem}; refusing it") from None
    except OSError as exc:
        raise SocketDirError(
            f"cannot use socket folder {exc.filename or folder}: {exc.strerror}"
        ) from None


def prepare_socket_dir(socket_file: str, uid: int | None = None) -> str:
    """Create the socket's folder (``mkdir`` mode 0700, parents too) and check it is private.

    A folder that already exists and is not ours (say ``/tmp/menda-credd-<uid>`` made
    first by another user) means no daemon can serve there: ``SocketDirError``.
    """
    uid = os.geteuid() if uid is None else uid
    folder = os.path.dirname(os.path.abspath(socket_file))
    check_private_dir(folder, uid, create=True)
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
    """Take the exclusive flock held for the daemon's life; None when another daemon has it.

    Our own ``try_flock`` rather than ``filelock``: the holder's pid is written into the
    locked file itself, for ``status`` to name a daemon that no longer answers.
    """
    fd = os.open(
        lock_path(socket_file), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        acquired = try_flock(fd)
    except OSError:
        os.close(fd)
        raise
    if not acquired:
        os.close(fd)
        return None
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
            if try_flock(fd):
                return None  # free (closing the fd releases it again)
        except OSError:
            pass
        data = os.pread(fd, 32, 0)  # held: by a live daemon
    finally:
        os.close(fd)
    text = data.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


# -- talking to a daemon (the CLI, and start's "is somebody there?") ----------------------


def ask(path: str, request: Request, timeout: float = 3.0) -> Reply:
    """One request to the daemon at ``path``, connection checked; raises DaemonUnavailable."""
    return round_trip(path, request, timeout)


def status(path: str, timeout: float = 5.0) -> dict[str, Any]:
    """The daemon's ``status`` body; raises DaemonUnavailable (also for an error reply)."""
    reply = ask(path, StatusRequest(), timeout)
    if not isinstance(reply, StatusReply):
        raise DaemonUnavailable("the daemon answered status with an error")
    return reply.status


def ping_pid(path: str, timeout: float = 3.0) -> int | None:
    """The pid our daemon at ``path`` reports, or None when nobody of ours answers.

    The connection is checked (folder and peer ours) before the ping is sent; the pid
    is for display only: ``stop`` signals the kernel's peer (``stoppable_pid``).
    """
    try:
        probe = probe_daemon(path, timeout)
    except DaemonUntrusted:
        return None
    return None if probe is None else probe.reported_pid


class Probe:
    """What one checked connection to ``path`` learnt: the kernel's peer and the ping reply.

    ``version`` and ``protocol`` are the daemon's package and protocol versions when it
    named them (a daemon of another protocol version still does, but ``reported_pid`` is
    then None: nothing else of its reply is read).
    """

    def __init__(
        self,
        peer: Peer,
        reported_pid: int | None,
        answered: bool,
        version: str | None = None,
        protocol: int | None = None,
    ) -> None:
        self.peer = peer
        self.reported_pid = reported_pid
        self.answered = answered
        self.version = version
        self.protocol = protocol

    def other_release(self, version: str) -> str | None:
        """What the daemon runs when its release is not ``version`` (ours), else None."""
        if self.protocol is not None and self.protocol != VERSION:
            known = f"v{self.protocol}" if self.protocol > 0 else "another version"
            return f"menda-credd {self.version or '(version unknown)'} (protocol {known})"
        if self.version is not None and self.version != version:
            return f"menda-credd {self.version}"
        return None


def running_message(probe: Probe, version: str) -> str:
    """``start``'s "already running" line: names another release, and how to switch to ours."""
    pid = probe.reported_pid or probe.peer.pid or "unknown"
    other = probe.other_release(version)
    if other is None:
        return f"menda-credd already running (pid {pid})"
    return (
        f"{other} already running (pid {pid}); this is menda-credd {version} "
        f"(protocol v{VERSION}). To run this one: menda-credd stop && menda-credd start"
    )


def probe_daemon(path: str, timeout: float = 3.0) -> Probe | None:
    """Connect (checked: folder and peer are ours), ping, and report; None when nobody listens.

    Raises ``DaemonUntrusted`` for a socket that is not ours. A daemon that accepts but
    does not answer (stopped with SIGSTOP, wedged) still has a kernel peer.
    """
    try:
        conn = Connection(path)
    except DaemonUntrusted:
        raise
    except DaemonUnavailable:
        return None
    try:
        try:
            reply = conn.ask(PingRequest(), timeout)
        except DaemonSpeaksOtherVersion as exc:
            # protocol 0: "another version" when its reply did not say which
            return Probe(conn.peer, None, True, exc.package, exc.protocol or 0)
        except DaemonUnavailable:
            return Probe(conn.peer, None, answered=False)
    finally:
        conn.close()
    if isinstance(reply, PingReply):
        return Probe(conn.peer, reply.pid, True, reply.version, reply.protocol)
    return Probe(conn.peer, None, answered=True)


def is_credd_command(argv: list[str] | None) -> bool:
    """True for a menda-credd command line (console script or ``python -m menda_credd``)."""
    if not argv:
        return False
    return any(
        os.path.basename(arg) in ("menda-credd", "menda_credd") or arg == "menda_credd"
        for arg in argv[:3]
    )


def stop_refusal(probe: Probe, uid: int, owner: int | None, argv: list[str] | None) -> str | None:
    """Why the process behind ``probe`` must not be signalled, or None when it may be.

    Only the kernel's peer pid is ever a candidate; it must run as us (the peer uid and,
    where ``/proc`` exists, its owner ``owner``), be a menda-credd (``argv``, where known),
    and, when the daemon answered, be the pid it names (else the socket is held by
    another process, such as a service manager's socket unit).
    """
    pid = probe.peer.pid
    if pid is None:
        return "the kernel does not say which process serves the socket"
    if probe.peer.uid != uid:
        return f"pid {pid} serving the socket does not run as you"
    if owner is not None and owner != uid:
        return f"pid {pid} serving the socket belongs to {private_dir.describe_uid(owner)}"
    if argv is not None and not is_credd_command(argv):
        name = os.path.basename(argv[0]) if argv else "?"
        return (
            f"pid {pid} serving the socket is not menda-credd (it runs {name!r}); if a "
            "service manager holds the socket, stop the daemon through it"
        )
    if probe.reported_pid is not None and probe.reported_pid != pid:
        return (
            f"the daemon answering says it is pid {probe.reported_pid}, but the kernel reports "
            f"pid {pid} as the socket's owner (a service manager's socket, or an impostor); "
            "stop it through its service manager"
        )
    return None


def stoppable_pid(path: str, timeout: float = 3.0) -> tuple[Probe | None, str | None]:
    """Probe ``path`` for ``stop``: ``(probe, None)`` when ``probe.peer.pid`` may be signalled,
    ``(probe, why)`` when it must not be, ``(None, None)`` when nobody listens.

    Raises ``DaemonUntrusted`` for a socket that is not ours (nothing is sent to it).
    """
    probe = probe_daemon(path, timeout)
    if probe is None:
        return None, None
    pid = probe.peer.pid
    owner = argv = None
    if pid is not None and procfs.has_proc():
        owner = procfs.process_owner(pid)
        if owner is None:
            return None, None  # gone meanwhile
        argv = procfs.command_line(pid)
    return probe, stop_refusal(probe, os.geteuid(), owner, argv)


def somebody_listens(path: str) -> bool:
    """True when a connect to ``path`` succeeds (a live socket, whoever holds it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def check_listener(path: str) -> None:
    """Raise ``DaemonUntrusted`` when what listens at ``path`` is not ours (the peer check)."""
    try:
        sock, _peer = connect_checked(path)
    except DaemonUntrusted:
        raise
    except DaemonUnavailable:
        return
    sock.close()


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


def is_identity_variable(name: str) -> bool:
    """A ``MENDA_*`` variable of the caller's identity (its secret among them), not ours."""
    return name.startswith("MENDA_") and not name.startswith("MENDA_CREDD")


def scrub_menda_env(env: MutableMapping[str, str] | None = None) -> list[str]:
    """Remove the starting shell's Menda identity variables; returns the names removed.

    The daemon answers each client with the environment that client sends; the
    ``MENDA_CLIENT_SECRET`` of whoever started it has no use here and would only sit in
    its environment (and in that of anything it might start).
    """
    env = os.environ if env is None else env
    names = [name for name in env if is_identity_variable(name)]
    for name in names:
        del env[name]
    return names


def child_env(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a detached daemon: ours without the Menda identity variables."""
    copy = dict(os.environ if env is None else env)
    scrub_menda_env(copy)
    return copy


def disable_core_dumps() -> None:
    """No core file may hold a token: RLIMIT_CORE 0 and, on Linux, not dumpable."""
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
