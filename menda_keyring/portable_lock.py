"""The token cache lock where ``flock(2)`` is missing (Windows): ``filelock``'s.

On Windows ``filelock.FileLock`` is a ``msvcrt.locking`` lock on the lock file, the
lock the Menda CLI takes there, so both still exclude each other. Imported only
where ``fcntl`` cannot be (see :class:`menda_keyring.fileutil.ExclusiveLock`): on
Linux and macOS the in-process path keeps its cheaper ``flock``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

with warnings.catch_warnings():
    # Off Windows without fcntl (an interpreter built without it, or the tests that remove
    # it to stand in for Windows) filelock says it falls back to its soft lock: we know.
    warnings.simplefilter("ignore")
    import filelock


class PortableLock:
    """An exclusive lock on ``path`` (created 0600 where modes mean anything)."""

    def __init__(self, path: Path) -> None:
        self._lock = filelock.FileLock(path, mode=0o600, thread_local=False)

    def acquire(self, timeout: float) -> bool:
        """True once held; False when it was not free within ``timeout`` seconds."""
        try:
            self._lock.acquire(timeout=max(timeout, 0.0), poll_interval=0.005)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        self._lock.release()
