"""Who is at the other end of a Unix socket, as the kernel reports it.

Standard library only (the shim's warm path and the daemon share it). Linux has
``SO_PEERCRED`` (pid, uid, gid of the process that called ``connect``/``listen``);
macOS has ``LOCAL_PEERCRED`` (a ``struct xucred`` with the uid) and ``LOCAL_PEERPID``.
"""

from __future__ import annotations

import socket
import struct
import sys

#: macOS <sys/un.h>: SOL_LOCAL, LOCAL_PEERCRED, LOCAL_PEERPID;
#: struct xucred starts {u_int cr_version; uid_t cr_uid; ...}.
SOL_LOCAL = 0
LOCAL_PEERCRED = 0x001
LOCAL_PEERPID = 0x002
XUCRED_SIZE = 76
_UCRED = struct.Struct("3i")


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


def parse_ucred(raw: bytes) -> Peer:
    """A Linux ``struct ucred`` (pid, uid, gid as three ints); 0/-1 mean "unknown"."""
    pid, uid, _gid = _UCRED.unpack(raw[: _UCRED.size])
    return Peer(pid if pid > 0 else None, uid if uid >= 0 else None)


def parse_xucred(raw: bytes) -> int:
    """The uid in a macOS ``struct xucred`` (u_int cr_version, uid_t cr_uid, ...)."""
    _version, uid = struct.unpack_from("=2I", raw)
    return int(uid)


def peer_credentials(sock: socket.socket) -> Peer:
    """The kernel's word on the process at the other end of a connected Unix socket."""
    try:
        if hasattr(socket, "SO_PEERCRED"):
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            return parse_ucred(raw)
        if sys.platform == "darwin":
            uid = parse_xucred(sock.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE))
            try:
                pid = struct.unpack("i", sock.getsockopt(SOL_LOCAL, LOCAL_PEERPID, 4))[0]
            except OSError:
                pid = 0
            return Peer(pid if pid > 0 else None, uid)
    except (OSError, struct.error):
        pass
    return Peer(None, None)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, or None."""
    return peer_credentials(sock).uid
