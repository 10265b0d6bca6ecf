"""The pre-warm state file on disk: read it safely, write it atomically (I/O, worker threads).

The file is the daemon's own (``paths.prewarm_state_path``): 0600 in a folder that is
0700 and ours, replaced atomically so that a crash leaves the old version or the new
one, never half of either. Whatever is wrong with it (not there, corrupt, foreign,
too big, a FIFO, a folder open to others) never stops the daemon: :func:`load` says
what in one line for a warning and pre-warm starts with an empty memory.
"""

from __future__ import annotations

from pathlib import Path

from menda_keyring.errors import ConfigError
from menda_keyring.fileutil import read_regular_file, write_private_file_atomically
from menda_keyring.private_dir import NotPrivateError, check_private_dir, make_private_dirs

from .prewarm import Record, decode

#: The state file is small (at most 256 pairs of labels); anything bigger is not ours.
MAX_SIZE = 512 * 1024


def load(path: Path) -> tuple[list[Record], str | None]:
    """The records in ``path`` and, when it could not be used, why (for a warning)."""
    try:
        check_private_dir(path.parent)
    except FileNotFoundError:
        return [], None
    except (NotPrivateError, OSError) as exc:
        return [], f"{exc}; not reading the pre-warm state there"
    try:
        data = read_regular_file(path, "pre-warm state file", MAX_SIZE)
    except FileNotFoundError:
        return [], None
    except ConfigError as exc:
        return [], f"{exc}; starting with an empty pre-warm memory"
    except OSError as exc:
        return [], f"pre-warm state file {path} cannot be read ({exc.strerror}); ignoring it"
    try:
        return decode(data), None
    except ValueError as exc:
        return [], f"pre-warm state file {path} is {exc}; ignoring it (it will be replaced)"


def save(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, 0600, in a folder made (or found) private."""
    make_private_dirs(path.parent)
    check_private_dir(path.parent)
    if len(data) > MAX_SIZE:
        raise OSError(f"pre-warm state would be {len(data)} bytes, over {MAX_SIZE}")
    write_private_file_atomically(path, data)


def describe_error(exc: OSError) -> str:
    """One line for a failed save: the folder's problem, or the system's reason."""
    if isinstance(exc, NotPrivateError):
        return str(exc)
    return f"{exc.filename or ''}: {exc.strerror}".strip(": ") if exc.strerror else str(exc)
