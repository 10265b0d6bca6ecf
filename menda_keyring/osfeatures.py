"""What this operating system offers our files and sockets, decided once, without I/O.

Standard library only and cheap (the in-process path imports it). Windows CPython has
no ``fcntl``, no ``socket.AF_UNIX``, no ``pwd``, no POSIX owners or permission bits in
``stat`` and none of the ``O_NOFOLLOW``-style open flags: each is looked up here so that
the rest of the code asks one question instead of guessing from ``sys.platform``. What
is missing is decided by what the interpreter has (``hasattr``), not by the platform's
name, so that a Linux interpreter with those parts removed behaves as Windows does
(tests/test_windows_emulation.py).
"""

from __future__ import annotations

import os

#: ``st_uid`` and the permission bits of ``st_mode`` mean owner and access (not on Windows,
#: where a folder's privacy is its ACL; the user profile's is private to its user).
POSIX_OWNERS = os.name == "posix"


def replace_retry_pauses(os_name: str) -> tuple[float, ...]:
    """Pauses between tries of renaming a file over one another process holds open.

    On Windows that rename fails (a sharing violation: ``PermissionError``) until the
    reader closes it, and readers of the token cache hold it for milliseconds: about 1 s
    of tries in all. None elsewhere: ``rename(2)`` replaces an open file atomically.
    """
    return (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.3) if os_name == "nt" else ()


REPLACE_RETRY_PAUSES = replace_retry_pauses(os.name)

#: Open flags; 0 where the system has no such flag (Windows has O_BINARY and none of the others).
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_DIRECTORY: int = getattr(os, "O_DIRECTORY", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
O_NOCTTY: int = getattr(os, "O_NOCTTY", 0)
#: Without it Windows opens files in text mode (CRLF translation, Ctrl-Z as end of file).
O_BINARY: int = getattr(os, "O_BINARY", 0)


def fchmod(fd: int, mode: int) -> None:
    """``os.fchmod`` where the system has it (Windows before Python 3.13 has not)."""
    if POSIX_OWNERS and hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


def unix_sockets_missing() -> str | None:
    """Why no daemon can be reached from here, or None (the shim's question: cheap)."""
    import socket

    if not hasattr(socket, "AF_UNIX"):
        return "this Python has no Unix sockets (socket.AF_UNIX)"
    return None


def daemon_unsupported() -> str | None:
    """Why menda-credd cannot run here, or None where it can.

    The daemon needs Unix sockets and ``flock``; Windows CPython has neither.
    """
    missing = unix_sockets_missing()
    if missing is not None:
        return missing
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return "this Python has no fcntl module (flock)"
    return None
