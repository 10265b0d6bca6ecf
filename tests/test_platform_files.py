"""Files and locks where the system lacks POSIX owners or flock (Windows), decided here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from menda_keyring import fileutil, osfeatures, private_dir
from menda_keyring.fileutil import ExclusiveLock
from menda_keyring.portable_lock import PortableLock
from menda_keyring.private_dir import NotPrivateError, check_private_dir, make_private_dirs

pytestmark = pytest.mark.unit


def test_folders_open_to_others_are_refused_where_modes_mean_something(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(NotPrivateError, match="open to group or others"):
        check_private_dir(folder)


def test_without_posix_owners_a_folder_is_only_required_to_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Windows: lstat says uid 0 and mode 0777 of every folder; privacy is the profile's ACL.
    monkeypatch.setattr(osfeatures, "POSIX_OWNERS", False)
    folder = tmp_path / "any"
    folder.mkdir()
    folder.chmod(0o777)
    check_private_dir(folder, uid=12345)
    with pytest.raises(FileNotFoundError):
        check_private_dir(tmp_path / "absent")
    make_private_dirs(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


def test_describe_uid_without_a_user_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pwd", None)  # import pwd fails
    assert private_dir.describe_uid(4242) == "uid 4242"


def test_the_portable_lock_and_flock_exclude_each_other(tmp_path: Path) -> None:
    """filelock's lock (what the Menda CLI takes) and our flock are one lock on Unix."""
    path = tmp_path / ".token.lock"
    ours = ExclusiveLock(path)
    assert ours.acquire(1.0)
    portable = PortableLock(path)
    assert not portable.acquire(0.05)
    ours.release()
    assert portable.acquire(1.0)
    assert not ExclusiveLock(path).acquire(0.05)
    portable.release()
    again = ExclusiveLock(path)
    assert again.acquire(0.05)
    again.release()


def test_open_flags_missing_on_windows_are_zero() -> None:
    for name in ("O_NOFOLLOW", "O_CLOEXEC", "O_DIRECTORY", "O_NONBLOCK", "O_NOCTTY", "O_BINARY"):
        assert getattr(osfeatures, name) == getattr(os, name, 0)


def test_the_daemon_needs_unix_sockets_and_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    assert osfeatures.daemon_unsupported() is None
    monkeypatch.setitem(sys.modules, "fcntl", None)
    assert osfeatures.daemon_unsupported() == "this Python has no fcntl module (flock)"
    monkeypatch.delattr(socket, "AF_UNIX")
    assert osfeatures.unix_sockets_missing() == "this Python has no Unix sockets (socket.AF_UNIX)"
    assert osfeatures.daemon_unsupported() == osfeatures.unix_sockets_missing()


class HeldOpen:
    """``os.replace`` as Windows answers it while a reader holds the target: refused N times."""

    def __init__(self, refusals: int, error: OSError | None = None) -> None:
        self.refusals = refusals
        self.error = error or PermissionError(13, "The process cannot access the file")
        self.tries = 0

    def __call__(self, src: Path, dst: Path) -> None:
        self.tries += 1
        if self.tries <= self.refusals:
            raise self.error
        os.replace(src, dst)


def _pair(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "new", tmp_path / "cache"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    return src, dst


def test_a_rename_over_a_file_held_open_is_tried_again_after_each_pause(tmp_path: Path) -> None:
    src, dst = _pair(tmp_path)
    slept: list[float] = []
    replace = HeldOpen(refusals=3)
    fileutil.replace_retrying(src, dst, (0.1, 0.2, 0.3, 0.4), replace=replace, sleep=slept.append)
    assert dst.read_bytes() == b"new" and not src.exists()
    assert (replace.tries, slept) == (4, [0.1, 0.2, 0.3])


def test_a_file_held_open_past_every_pause_is_the_callers_error(tmp_path: Path) -> None:
    src, dst = _pair(tmp_path)
    slept: list[float] = []
    replace = HeldOpen(refusals=10)
    with pytest.raises(PermissionError):
        fileutil.replace_retrying(src, dst, (0.1, 0.2), replace=replace, sleep=slept.append)
    assert (replace.tries, slept, dst.read_bytes()) == (3, [0.1, 0.2], b"old")


def test_only_a_sharing_violation_is_tried_again_and_posix_never_waits(tmp_path: Path) -> None:
    src, dst = _pair(tmp_path)
    slept: list[float] = []
    missing = HeldOpen(refusals=1, error=FileNotFoundError(2, "gone"))
    with pytest.raises(FileNotFoundError):
        fileutil.replace_retrying(src, dst, (0.1,) * 3, replace=missing, sleep=slept.append)
    assert (missing.tries, slept) == (1, [])
    held = HeldOpen(refusals=1)
    with pytest.raises(PermissionError):
        fileutil.replace_retrying(src, dst, (), replace=held, sleep=slept.append)
    assert (held.tries, slept) == (1, [])
    # Here (POSIX) there are no pauses, and Windows gets about a second of them.
    assert osfeatures.REPLACE_RETRY_PAUSES == osfeatures.replace_retry_pauses("posix") == ()
    assert 0.5 <= sum(osfeatures.replace_retry_pauses("nt")) <= 2.0
