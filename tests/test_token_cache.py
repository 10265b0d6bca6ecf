"""The token cache shared with the Menda CLI: other entries kept, corrupt files kept aside."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from menda_keyring import token_cache
from menda_keyring.fileutil import HAS_FLOCK, LockTimeout, exclusive_lock
from menda_keyring.identity import Identity
from menda_keyring.paths import token_cache_path
from menda_keyring.private_dir import make_private_dirs
from menda_keyring.tokens import AccessToken

HOST = "https://api.example.menda.cloud"
MACHINE = Identity("env", "m2m", HOST, "m2m:client:bot", None, "bot", "s")
USER = Identity("profile", "u2m", HOST, "u2m:default", "default")
NOW = 1_800_000_000.0


def cli_entry(token: str, expires_at: float, host: str = HOST, auth_type: str = "u2m") -> dict:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": int(expires_at),
        "host": host,
        "auth_type": auth_type,
    }


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return token_cache_path(tmp_path)


def test_store_keeps_other_programs_entries_and_is_private(cache: Path) -> None:
    make_private_dirs(cache.parent)
    cache.write_text(
        json.dumps({"version": 1, "tokens": {"u2m:default": cli_entry("user-tok", NOW + 900)}})
    )
    token_cache.store(cache, MACHINE, AccessToken("machine-tok", NOW + 3600, HOST, "m2m"))
    data = json.loads(cache.read_text())
    assert data["version"] == 1
    assert data["tokens"]["u2m:default"]["access_token"] == "user-tok"
    assert data["tokens"]["m2m:client:bot"] == cli_entry("machine-tok", NOW + 3600, auth_type="m2m")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert not [p for p in cache.parent.iterdir() if ".tmp-" in p.name]


def test_folders_are_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        cache = token_cache_path(tmp_path)
        token_cache.store(cache, MACHINE, AccessToken("t", NOW + 3600, HOST, "m2m"))
    finally:
        os.umask(old)
    for folder in (tmp_path / ".menda", cache.parent.parent, cache.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("entry", "usable"),
    [
        (cli_entry("u", NOW + 61), True),
        (cli_entry("u", NOW + 59), False),  # under 60 s left counts as expired
        (cli_entry("u", NOW + 900, host=HOST + "/"), True),
        (cli_entry("u", NOW + 900, host="https://other.example"), False),
        (cli_entry("u", NOW + 900, auth_type="m2m"), False),
        ({"access_token": "u", "expires_at": "soon", "host": HOST, "auth_type": "u2m"}, False),
        ({"expires_at": NOW + 900, "host": HOST, "auth_type": "u2m"}, False),
        ("not a dict", False),
    ],
)
def test_lookup_checks_host_type_and_expiry(cache: Path, entry: object, usable: bool) -> None:
    make_private_dirs(cache.parent)
    cache.write_text(json.dumps({"version": 1, "tokens": {"u2m:default": entry}}))
    found = token_cache.lookup(cache, USER, NOW)
    assert (found is not None) is usable
    if usable:
        assert found.token == "u"


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[1,2]", b'{"tokens": []}'])
def test_corrupt_file_is_empty_cache_and_kept_aside_before_rewrite(
    cache: Path, content: bytes
) -> None:
    make_private_dirs(cache.parent)
    cache.write_bytes(content)
    assert token_cache.lookup(cache, USER, NOW) is None
    assert token_cache.read_snapshot(cache).corrupt
    token_cache.store(cache, MACHINE, AccessToken("m", NOW + 3600, HOST, "m2m"))
    backups = [p for p in cache.parent.iterdir() if ".corrupt-" in p.name]
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert json.loads(cache.read_text())["tokens"]["m2m:client:bot"]["access_token"] == "m"


def test_missing_and_empty_files_are_empty_caches(cache: Path) -> None:
    assert token_cache.lookup(cache, USER, NOW) is None
    make_private_dirs(cache.parent)
    cache.write_text("  \n")
    assert not token_cache.read_snapshot(cache).corrupt
    assert token_cache.lookup(cache, USER, NOW) is None


def test_drop_removes_only_the_rejected_token(cache: Path) -> None:
    token_cache.store(cache, MACHINE, AccessToken("old", NOW + 3600, HOST, "m2m"))
    token_cache.drop(cache, MACHINE, rejected="someone-elses-newer-token")
    assert token_cache.lookup(cache, MACHINE, NOW) is not None
    token_cache.drop(cache, MACHINE, rejected="old")
    assert token_cache.lookup(cache, MACHINE, NOW) is None


def test_lock_excludes_and_times_out(tmp_path: Path) -> None:
    lock = tmp_path / ".token.lock"
    with exclusive_lock(lock, 1.0):
        # flock locks belong to open file descriptions: a second open in this process conflicts.
        with pytest.raises(LockTimeout), exclusive_lock(lock, 0.1):
            pass
    with exclusive_lock(lock, 0.1):
        pass
    if HAS_FLOCK:  # filelock's lock (no flock: Windows) removes its file on release
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_a_writer_prunes_long_expired_machine_entries_and_keeps_everything_else(
    tmp_path: Path,
) -> None:
    path = token_cache_path(tmp_path)
    now = time.time()
    others = {
        "m2m:client:old": {"access_token": "a", "expires_at": now - 7200, "host": "h"},
        "m2m:client:recent": {"access_token": "b", "expires_at": now - 60, "host": "h"},
        "u2m:default": {"access_token": "c", "expires_at": now - 86400, "host": "h"},
        "other-program": {"expires_at": 0},
    }
    make_private_dirs(path.parent)
    path.write_text(json.dumps({"version": 1, "tokens": others}))
    token_cache.store(path, MACHINE, AccessToken("fresh", now + 3600, HOST, "m2m"))
    kept = json.loads(path.read_text())["tokens"]
    assert set(kept) == {"m2m:client:recent", "u2m:default", "other-program", "m2m:client:bot"}
