"""Private folders: create them 0700 and check that one is still private to us.

Standard library only. One rule for the daemon's socket folder, the shim's check
of it and the token cache folder: a real folder (not a symbolic link), owned by
us, with no group or other permission bits. ``folder_problem`` is the decision,
without I/O; ``check_private_dir`` does the one ``lstat``.

On Windows a folder's privacy is its ACL, not an owner and mode bits (``lstat`` there
reports uid 0 and mode 0777 for every folder): folders are made with ``mkdir`` and
not checked; the user's profile folder, where they live, is private to its user.
"""

from __future__ import annotations

import contextlib
import os
import stat

from . import osfeatures


class NotPrivateError(OSError):
    """A folder that is not private to us; the message names it and its owner.

    An ``OSError`` (``strerror`` is the problem) so that callers that treat an unusable
    folder as an I/O failure, such as the resolution flow's effects, treat this one so too.
    """

    def __init__(self, folder: str, problem: str) -> None:
        super().__init__(f"folder {folder} {problem}")
        self.strerror = problem
        self.filename = None
        self.folder = folder
        self.problem = problem

    def __str__(self) -> str:
        return f"folder {self.folder} {self.problem}"


def describe_uid(uid: int) -> str:
    """``uid 65534 (nobody)``, or just ``uid 4242`` when the user database has no name."""
    try:
        import pwd

        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except (ImportError, KeyError, OverflowError):
        return f"uid {uid}"


#: Socket folders: no permission bits at all for group and others.
CLOSED = 0o077
#: Folders shared with the Menda CLI (the token cache): others may look, never write.
NOT_WRITABLE = 0o022


def folder_problem(st: os.stat_result, uid: int, forbidden: int = CLOSED) -> str | None:
    """What makes a folder (its ``lstat``) unfit to hold our secrets, or None when it is fit.

    ``forbidden`` are the group/other mode bits the folder must not have.
    """
    if stat.S_ISLNK(st.st_mode):
        return f"is a symbolic link (owned by {describe_uid(st.st_uid)}), not a folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"is not a folder (owned by {describe_uid(st.st_uid)})"
    if st.st_uid != uid:
        return f"belongs to {describe_uid(st.st_uid)}, not to you ({describe_uid(uid)})"
    if st.st_mode & forbidden:
        opened = "writable by" if forbidden == NOT_WRITABLE else "open to"
        return (
            f"(owned by {describe_uid(st.st_uid)}) has mode {stat.S_IMODE(st.st_mode):04o}, "
            f"{opened} group or others"
        )
    return None


def check_private_dir(
    folder: str | os.PathLike[str], uid: int | None = None, forbidden: int = CLOSED
) -> None:
    """Raise ``NotPrivateError`` unless ``folder`` is a real folder of ours closed to others.

    A folder that cannot be inspected (absent, unreadable parent) raises ``OSError``.
    Where owners and modes mean nothing (Windows) only its existence is checked.
    """
    folder = os.fspath(folder)
    if not osfeatures.POSIX_OWNERS:
        os.stat(folder)  # absent: FileNotFoundError, as on POSIX
        return
    uid = os.geteuid() if uid is None else uid
    problem = folder_problem(os.lstat(folder), uid, forbidden)
    if problem is not None:
        raise NotPrivateError(folder, problem)


def make_private_dirs(folder: str | os.PathLike[str], uid: int | None = None) -> None:
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
            if osfeatures.POSIX_OWNERS:
                flags = os.O_RDONLY | osfeatures.O_DIRECTORY | osfeatures.O_NOFOLLOW
                fd = os.open(path, flags)
                try:
                    os.fchmod(fd, 0o700)
                finally:
                    os.close(fd)
        check_private_dir(path, uid)
