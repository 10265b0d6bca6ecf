"""Private folders: create them 0700 and check that one is still private to us.

Standard library only. One rule for the daemon's socket folder, the shim's check
of it and the token cache folder: a real folder (not a symbolic link), owned by
us, with no group or other permission bits. ``folder_problem`` is the decision,
without I/O; ``check_private_dir`` does the one ``lstat``.
"""

from __future__ import annotations

import contextlib
import os
import stat


class NotPrivateError(Exception):
    """A folder that is not private to us; the message names it and its owner."""

    def __init__(self, folder: str, problem: str) -> None:
        super().__init__(f"folder {folder} {problem}")
        self.folder = folder
        self.problem = problem


def describe_uid(uid: int) -> str:
    """``uid 65534 (nobody)``, or just ``uid 4242`` when the user database has no name."""
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (KeyError, OverflowError):
        return f"uid {uid}"


def folder_problem(st: os.stat_result, uid: int) -> str | None:
    """What makes a folder (its ``lstat``) unfit to hold our secrets, or None when it is fit."""
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link (owned by {describe_uid(st.st_uid)}), not a folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"is not a folder (owned by {describe_uid(st.st_uid)})"
    if st.st_uid != uid:
        return f"belongs to {describe_uid(st.st_uid)}, not to you ({describe_uid(uid)})"
    if st.st_mode & 0o077:
        return (
            f"(owned by {describe_uid(st.st_uid)}) has mode {stat.S_IMODE(st.st_mode):04o}, "
            "open to group or others"
        )
    return None


def check_private_dir(folder: str, uid: int | None = None) -> None:
    """Raise ``NotPrivateError`` unless ``folder`` is a real folder of ours closed to others.

    A folder that cannot be inspected (absent, unreadable parent) raises ``OSError``.
    """
    uid = os.geteuid() if uid is None else uid
    problem = folder_problem(os.lstat(folder), uid)
    if problem is not None:
        raise NotPrivateError(folder, problem)


def make_private_dirs(folder: str, uid: int | None = None) -> None:
    """Create ``folder`` and its missing parents by ``mkdir`` 0700, and verify each one made.

    What already existed is left alone (the caller checks it where it matters); what we
    created is set to 0700 whatever the umask and checked with ``lstat`` afterwards, so
    a folder swapped in between ``mkdir`` and use is refused.
    """
    missing = []
    current = os.path.abspath(folder)
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.fchmod(fd, 0o700)
            finally:
                os.close(fd)
        check_private_dir(path, uid)
