"""Private folders, private files and the advisory lock, whoever's umask.

The lock is an exclusive ``flock(2)`` on a separate lock file, the same lock
``filelock.UnixFileLock`` takes, so the Menda CLI and menda-keyring exclude each
other. It is written here rather than imported from ``filelock`` because that
import alone costs about 50 ms, on the path of every in-process ``keyring get``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .errors import ConfigError


class LockTimeout(TimeoutError):
    """The lock was not free within the time allowed."""


def write_private_file_atomically(path: Path, data: bytes) -> None:
    """Write a 0600 temporary file beside ``path``, flush it, then rename it over ``path``."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with suppress(OSError):
        os.unlink(path)


def try_flock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting: True if taken, False if held.

    The one place where contention is told apart from a real error (the token cache lock
    here, the daemon's life lock in ``menda_credd.runtime``).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


class ExclusiveLock:
    """An exclusive flock on ``path`` (created 0600), taken with a bounded wait.

    ``acquire`` and ``release`` are separate calls because the resolution flow takes the
    lock in one effect and gives it back in a later one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, timeout: float) -> bool:
        """True once held; False when it was not free within ``timeout`` seconds."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + max(timeout, 0.0)
        pause = 0.002
        while True:
            try:
                acquired = try_flock(fd)
            except OSError:
                os.close(fd)
                raise
            if acquired:
                self._fd = fd
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                os.close(fd)
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


@contextmanager
def exclusive_lock(lock_path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path``, waiting at most ``timeout`` s."""
    lock = ExclusiveLock(lock_path)
    if not lock.acquire(timeout):
        raise LockTimeout(f"timed out after {timeout:.1f} s waiting for lock {lock_path}")
    try:
        yield
    finally:
        lock.release()


#: Files we read (``mendacfg``, ``.token``) are small; anything bigger is refused.
MAX_READ = 1 << 20


def read_regular_file(path: Path, what: str, limit: int = MAX_READ) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``what`` names it in errors.

    Opened with ``O_NONBLOCK`` (a FIFO does not block the open) and checked on the open
    descriptor (``fstat``), so a FIFO, a device such as ``/dev/zero`` or a socket swapped
    in is a ``ConfigError`` at once. A folder raises ``IsADirectoryError``; a missing file
    ``FileNotFoundError`` (callers say what that means).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(
                f"{what} {path} is not a regular file (a FIFO, device or socket); "
                "refusing to read it"
            )
        if st.st_size > limit:
            raise ConfigError(f"{what} {path} is larger than {limit // 1024} KiB; refusing it")
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ConfigError(f"{what} {path} is larger than {limit // 1024} KiB; refusing it")
        return b"".join(chunks)
    finally:
        os.close(fd)
