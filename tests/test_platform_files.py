"""Files and locks where the system lacks POSIX owners or flock (Windows), decided here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from menda_keyring import osfeatures, private_dir
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
