"""Private folders, private files and the advisory lock, whoever's umask.

The lock is an exclusive ``flock(2)`` on a separate lock file, the same lock
``filelock.UnixFileLock`` takes, so the Menda CLI and menda-keyring exclude each
other. It is written here rather than imported from ``filelock`` because that
import alone costs about 50 ms, on the path of every in-process ``keyring get``.
Where there is no ``flock`` (Windows) the lock is ``filelock``'s own
(:mod:`menda_keyring.portable_lock`), which is what the Menda CLI takes there.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from . import osfeatures
from .errors import ConfigError

try:
    import fcntl as _fcntl
except ImportError:  # Windows: the lock is filelock's there (ExclusiveLock)
    _fcntl = None  # type: ignore[assignment]

#: Whether the lock is our flock (False: filelock's, which removes its file on release).
HAS_FLOCK = _fcntl is not None

if TYPE_CHECKING:
    from .portable_lock import PortableLock

#: Flags of every file we open: binary on Windows, never following a symbolic link elsewhere.
_OPEN_FLAGS = osfeatures.O_NOFOLLOW | osfeatures.O_CLOEXEC | osfeatures.O_BINARY


class LockTimeout(TimeoutError):
    """The lock was not free within the time allowed."""


def write_private_file_atomically(path: Path, data: bytes) -> None:
    """Write a 0600 temporary file beside ``path``, flush it, then rename it over ``path``."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600)
    try:
        osfeatures.fchmod(fd, 0o600)
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
        replace_retrying(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def replace_retrying(
    src: Path,
    dst: Path,
    pauses: tuple[float, ...] = osfeatures.REPLACE_RETRY_PAUSES,
    *,
    replace: Callable[[Path, Path], None] = os.replace,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """``os.replace``, tried again after each pause while the target is held open (Windows).

    Only ``PermissionError`` (what a sharing violation is in Python) is tried again; the
    last try's error is the caller's. With no pauses (POSIX) this is one ``os.replace``.
    """
    for pause in pauses:
        try:
            replace(src, dst)
        except PermissionError:
            sleep(pause)
        else:
            return
    replace(src, dst)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | osfeatures.O_DIRECTORY)
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
    if _fcntl is None:
        raise OSError(errno.ENOSYS, "flock is not available on this system")
    try:
        _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


class ExclusiveLock:
    """An exclusive flock on ``path`` (created 0600), taken with a bounded wait.

    ``acquire`` and ``release`` are separate calls because the resolution flow takes the
    lock in one effect and gives it back in a later one. Without ``fcntl`` (Windows) it is
    ``filelock``'s lock on the same file, imported only then.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._portable: PortableLock | None = None

    def acquire(self, timeout: float) -> bool:
        """True once held; False when it was not free within ``timeout`` seconds."""
        if _fcntl is None:
            from .portable_lock import PortableLock

            portable = PortableLock(self.path)
            if not portable.acquire(timeout):
                return False
            self._portable = portable
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o600)
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
        portable, self._portable = self._portable, None
        if portable is not None:
            portable.release()
        fd, self._fd = self._fd, None
        if fd is not None and _fcntl is not None:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_UN)
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
    flags = (
        os.O_RDONLY
        | osfeatures.O_NONBLOCK
        | osfeatures.O_CLOEXEC
        | osfeatures.O_NOCTTY
        | osfeatures.O_BINARY
    )
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
