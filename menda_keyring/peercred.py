"""Who is at the other end of a Unix socket, as the kernel reports it.

Standard library only (the shim's warm path and the daemon share it). Each system's call
is a few lines behind one seam, :data:`read_peer`, picked once at import by what the
interpreter offers; the decisions around it (what a reply means, what an unknown peer
is, which peer is accepted) are plain functions that tests drive with the call
substituted, on any system.

- Linux, ``socket(7)``: ``getsockopt(SOL_SOCKET, SO_PEERCRED)`` fills a ``struct ucred``
  (``pid_t pid; uid_t uid; gid_t gid;``, <sys/socket.h> with ``_GNU_SOURCE``).
- macOS, ``unix(4)``: ``getsockopt(SOL_LOCAL, LOCAL_PEERCRED)`` fills a ``struct xucred``
  and ``getsockopt(SOL_LOCAL, LOCAL_PEERPID)`` a ``pid_t``; the constants and the
  layout are :data:`SOL_LOCAL`, :data:`LOCAL_PEERCRED`, :data:`LOCAL_PEERPID` and
  :data:`XUCRED` below, each with the header it comes from. This is what ``getpeereid(3)``
  reads, without loading libc through ``ctypes`` on keyring's start-up path.

A peer whose uid cannot be determined is never accepted (:func:`accepted`).
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class SocketOptions(Protocol):
        """The one method of a socket the readers use (a fake one in tests)."""

        def getsockopt(self, level: int, option: int, buflen: int, /) -> bytes: ...


#: macOS <sys/un.h>: ``#define SOL_LOCAL 0`` (level number of get/setsockopt for local
#: domain sockets).
SOL_LOCAL = 0
#: macOS <sys/un.h>: ``#define LOCAL_PEERCRED 0x001`` (retrieve peer credentials).
LOCAL_PEERCRED = 0x001
#: macOS <sys/un.h>: ``#define LOCAL_PEERPID 0x002`` (retrieve peer pid).
LOCAL_PEERPID = 0x002
#: macOS <sys/ucred.h>: ``#define XUCRED_VERSION 0``.
XUCRED_VERSION = 0
#: macOS <sys/param.h> ``#define NGROUPS NGROUPS_MAX``; <sys/syslimits.h> ``NGROUPS_MAX 16``.
XUCRED_NGROUPS = 16
#: macOS <sys/ucred.h>: ``struct xucred { u_int cr_version; uid_t cr_uid; short
#: cr_ngroups; gid_t cr_groups[NGROUPS]; }`` in native order and alignment (two bytes of
#: padding after ``cr_ngroups``): 76 bytes.
XUCRED = struct.Struct(f"@IIh{XUCRED_NGROUPS}I")
XUCRED_SIZE = XUCRED.size
#: Its first two fields, all that is read: ``cr_version`` and ``cr_uid``.
_XUCRED_HEAD = struct.Struct("@II")
#: ``pid_t`` is an ``int`` on both systems (<sys/_types.h>, <bits/types.h>).
PID_T = struct.Struct("@i")
#: Linux <sys/socket.h>: ``struct ucred { pid_t pid; uid_t uid; gid_t gid; }``.
_UCRED = struct.Struct("3i")
#: ``(uid_t)-1``: "no user" in both kernels' interfaces.
_NO_UID = 0xFFFFFFFF


class Peer(tuple[int | None, int | None]):
    """``(pid, uid)`` of the peer; None where the kernel would not say.

    A plain tuple subclass rather than a ``NamedTuple``: this module is imported at
    every ``keyring`` start, and building a NamedTuple class costs more than all the rest.
    """

    __slots__ = ()

    def __new__(cls, pid: int | None, uid: int | None) -> Peer:
        return tuple.__new__(cls, (pid, uid))

    @property
    def pid(self) -> int | None:
        pid: int | None = self[0]
        return pid

    @property
    def uid(self) -> int | None:
        uid: int | None = self[1]
        return uid


UNKNOWN = Peer(None, None)


# -- what the kernel's answers mean -----------------------------------------------------


def parse_ucred(raw: bytes) -> Peer:
    """A Linux ``struct ucred`` (pid, uid, gid as three ints); 0/-1 mean "unknown"."""
    pid, uid, _gid = _UCRED.unpack(raw[: _UCRED.size])
    return Peer(pid if pid > 0 else None, uid if uid >= 0 else None)


def parse_xucred(raw: bytes) -> int | None:
    """The uid in a macOS ``struct xucred``, or None when the answer cannot be read as one.

    Too short to hold ``cr_uid``, or a ``cr_version`` other than ``XUCRED_VERSION`` (a
    layout this code was not written for), or ``(uid_t)-1``: unknown, so refused.
    """
    if len(raw) < _XUCRED_HEAD.size:
        return None
    version, uid = _XUCRED_HEAD.unpack_from(raw)
    if version != XUCRED_VERSION or uid == _NO_UID:
        return None
    return int(uid)


def parse_pid(raw: bytes) -> int | None:
    """A ``pid_t`` answer; not positive (or short) means unknown."""
    if len(raw) < PID_T.size:
        return None
    (pid,) = PID_T.unpack_from(raw)
    return pid if pid > 0 else None


def accepted(peer: Peer, uid: int) -> bool:
    """The one rule both ends apply: the kernel says the peer runs as ``uid``."""
    return peer.uid is not None and peer.uid == uid


# -- the calls, one per system --------------------------------------------------------


def linux_peer(sock: SocketOptions) -> Peer:
    """``SO_PEERCRED``: the pid and uid of whoever called ``connect`` or ``listen``."""
    return parse_ucred(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def darwin_peer(sock: SocketOptions) -> Peer:
    """``LOCAL_PEERCRED`` for the uid, then ``LOCAL_PEERPID`` (macOS 10.8+) for the pid.

    The uid decides; the pid only serves ``menda-credd stop``, so an error reading it
    leaves it unknown instead of refusing the peer.
    """
    uid = parse_xucred(sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE))
    if uid is None:
        return UNKNOWN
    try:
        pid = parse_pid(sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, PID_T.size))
    except OSError:
        pid = None
    return Peer(pid, uid)


def unknown_peer(sock: SocketOptions) -> Peer:
    """A system with no call we know: every peer is unknown, so none is accepted."""
    return UNKNOWN


def reader_for(platform: str, has_so_peercred: bool) -> Callable[[SocketOptions], Peer]:
    """Which call answers on this system: decided once, from what the interpreter has."""
    if has_so_peercred:
        return linux_peer
    if platform == "darwin":
        return darwin_peer
    return unknown_peer


#: The seam: the call this system makes. Tests replace it to drive macOS's on Linux.
read_peer: Callable[[SocketOptions], Peer] = reader_for(
    sys.platform, hasattr(socket, "SO_PEERCRED")
)


def peer_credentials(sock: SocketOptions) -> Peer:
    """The kernel's word on the process at the other end of a connected Unix socket.

    A call that fails (not a Unix socket, an option the kernel does not know, a short
    answer) is an unknown peer, never an error: the caller refuses it.
    """
    try:
        return read_peer(sock)
    except (OSError, struct.error):
        return UNKNOWN
