"""Pre-warm with a real menda-credd, the real keyring CLI and the fake menda-cloud.

Ask, stop, start again: the exchange happens at start, before any request, and the first
``keyring get`` is answered from memory. The state file is private and holds no secret;
a corrupt one is ignored; an identity that no longer works is forgotten; ``--no-prewarm``
and ``MENDA_CREDD_PREWARM=off`` turn it all off.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, base_env, sentinel, write_profile, write_user_token
from tests.support.procs import credd, keyring_get
from tests.support.waiting import wait_until

pytestmark = pytest.mark.daemon

OTHER_URL = CA_URL.replace("menda-private-", "other-domain-")


def m2m_profile(home: Path, cloud: FakeMendaCloud, secret: str) -> None:
    cloud.add_client("laptop", secret)
    write_profile(
        home,
        f"[default]\nhost = {cloud.url}\nauth_type = m2m\n"
        f"client_id = laptop\nclient_secret = {secret}\n",
    )


def identity_of(auth_type: str, home: Path, cloud: FakeMendaCloud) -> str:
    """Profile ``default``: m2m, or u2m signed in for an hour as ``menda auth login``
    leaves it; the user's access token (empty for m2m)."""
    if auth_type == "m2m":
        m2m_profile(home, cloud, sentinel())
        return ""
    write_profile(home, f"[default]\nhost = {cloud.url}\nauth_type = u2m\n")
    token, expires = cloud.issue_user_token(lifetime=3600)
    write_user_token(home, "default", token, expires, cloud.url)
    return token


def state_file(home: Path) -> Path:
    return home / ".local" / "state" / "menda-credd" / "prewarm.json"


@pytest.fixture
def env(home: Path, sockdir: Path) -> dict[str, str]:
    return base_env(home, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))


def remember_one(env: dict[str, str], cloud: FakeMendaCloud, *args: str) -> str:
    """A daemon that is asked once and stopped; the token it answered."""
    with Daemon(env, env["MENDA_CREDD_SOCKET"], *args):
        token = keyring_get(env).token
    assert cloud.counts()["registry"] == 1
    return token


@pytest.mark.parametrize("auth_type", ["m2m", "u2m"])
def test_after_a_restart_the_first_keyring_get_is_answered_from_memory(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str], auth_type: str
) -> None:
    identity_of(auth_type, home, cloud)
    remember_one(env, cloud)
    assert state_file(home).is_file()

    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        # The exchange happens at start, before any request is made.
        wait_until(lambda: daemon.counters()["prewarms"] == 1, what="the pre-warm at start")
        assert cloud.counts()["registry"] == 2
        assert daemon.counters()["requests"] == 0
        token = keyring_get(env).token
        assert cloud.is_valid_registry_token(token, "menda-private")
        assert cloud.counts()["registry"] == 2, "answered from memory: no new exchange"
        counters = daemon.counters()
        assert counters["hits"] == 1 and counters["waits"] == 0
        report = daemon.cli_status_json()
        assert report["prewarm"]["enabled"] is True
        assert report["prewarm"]["remembered"] == 1
        assert report["prewarm"]["warmed_at_start"] == 1
        assert report["prewarm"]["state_file"] == str(state_file(home))
        (entry,) = report["entries"]
        assert entry["prewarmed_at"] is not None and entry["requests"] == 1
        text = credd("status", env=env).check().stdout
        assert "pre-warm:     on, 1 pairs remembered in " in text
        assert "PRE-WARMED" in text


def test_the_state_file_is_private_and_holds_labels_and_domains_only(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str], tmp_path: Path
) -> None:
    secret = sentinel()
    m2m_profile(home, cloud, secret)
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg-state")
    with Daemon(env, env["MENDA_CREDD_SOCKET"], umask=0):
        token = keyring_get(env).token
    path = tmp_path / "xdg-state" / "menda-credd" / "prewarm.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not state_file(home).exists()
    raw = path.read_bytes()
    cache = json.loads((home / ".menda" / "tokens" / "cache" / ".token").read_text())
    access_tokens = [e["access_token"] for e in cache["tokens"].values()]
    for secret_value in (secret, token, *access_tokens):
        assert secret_value.encode() not in raw
    (pair,) = json.loads(raw)["pairs"]
    assert pair["profile"] == "default" and pair["home"] == str(home)
    assert pair["domain"] == "menda-private" and pair["owner"] == "058264169513"
    assert pair["label"] == f"profile default (m2m) at {cloud.url}"


def test_an_environment_trio_identity_is_not_written(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str]
) -> None:
    secret = sentinel()
    cloud.add_client("ci-trio", secret)
    trio = {**env, "MENDA_CLIENT_ID": "ci-trio", "MENDA_CLIENT_SECRET": secret}
    trio["MENDA_HOST"] = cloud.url
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        keyring_get(trio).check()
        assert daemon.cli_status_json()["prewarm"]["remembered"] == 1  # in memory
    raw = state_file(home).read_bytes() if state_file(home).exists() else b""
    assert secret.encode() not in raw and b"ci-trio" not in raw


def test_a_daemon_killed_mid_way_leaves_the_state_file_it_last_wrote(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str]
) -> None:
    m2m_profile(home, cloud, sentinel())
    cloud.add_domain("other-domain")
    remember_one(env, cloud)
    before = state_file(home).read_bytes()
    crashed = Daemon(env, env["MENDA_CREDD_SOCKET"]).start()
    wait_until(lambda: crashed.counters()["prewarms"] == 1, what="the pre-warm at start")
    keyring_get(env, OTHER_URL).check()  # a new pair, not yet written (debounce)
    crashed.kill()
    assert state_file(home).read_bytes() == before
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        wait_until(lambda: daemon.counters()["prewarms"] == 1, what="the pre-warm at start")
        assert "WARNING menda_credd.prewarm" not in daemon.log()


@pytest.mark.parametrize("how", ["--no-prewarm", "MENDA_CREDD_PREWARM=off"])
def test_prewarm_can_be_turned_off(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str], how: str
) -> None:
    m2m_profile(home, cloud, sentinel())
    cloud.add_domain("other-domain")
    remember_one(env, cloud)
    before = state_file(home).read_bytes()
    off = dict(env)
    if how.startswith("--"):
        credd("start", "--no-prewarm", env=off).check()  # detached: the flag is passed on
    else:
        off["MENDA_CREDD_PREWARM"] = "off"
        credd("start", env=off).check()
    try:
        report = json.loads(credd("status", "--json", env=off).check().stdout)
        assert report["prewarm"] == {"enabled": False}
        assert "pre-warm:     off" in credd("status", env=off).check().stdout
        keyring_get(off, OTHER_URL).check()  # a pair it would otherwise remember
        counters = json.loads(credd("status", "--json", env=off).check().stdout)["counters"]
        assert counters["prewarms"] == 0 and counters["waits"] == 1
        assert cloud.counts()["registry"] == 2  # the remembered pair was not exchanged
    finally:
        credd("stop", env=off).check()
    assert state_file(home).read_bytes() == before, "neither read nor written"


@pytest.mark.parametrize("damage", ["garbage", "foreign", "oversized", "fifo"])
def test_a_damaged_state_file_is_ignored_with_a_warning_and_replaced(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str], damage: str
) -> None:
    m2m_profile(home, cloud, sentinel())
    path = state_file(home)
    path.parent.mkdir(mode=0o700, parents=True)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff{{{")
    elif damage == "foreign":
        path.write_text(json.dumps({"format": "someone-else", "pairs": []}))
    elif damage == "oversized":
        path.write_bytes(b" " * (600 * 1024))
    else:
        os.mkfifo(path)
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        keyring_get(env).check()
        status = daemon.cli_status_json()["prewarm"]
        assert status["enabled"] is True and status["state_file_problem"]
    assert "WARNING menda_credd.prewarm" in daemon.log()
    (pair,) = json.loads(path.read_text())["pairs"]  # replaced by a good one at shutdown
    assert pair["domain"] == "menda-private"


@pytest.mark.parametrize("change", ["profile removed", "login over"])
def test_an_identity_that_no_longer_works_is_skipped_quietly_and_forgotten(
    cloud: FakeMendaCloud, home: Path, env: dict[str, str], change: str
) -> None:
    token = identity_of("m2m" if change == "profile removed" else "u2m", home, cloud)
    remember_one(env, cloud)
    if change == "profile removed":
        write_profile(home, f"[other]\nhost = {cloud.url}\n")
    else:
        write_user_token(home, "default", token, 1_000_000, cloud.url)  # long expired
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as daemon:
        wait_until(lambda: daemon.counters()["prewarm_forgotten"] == 1, what="forgetting")
        assert daemon.cli_status_json()["prewarm"]["remembered"] == 0
        assert daemon.counters()["prewarm_failures"] == 0
    assert cloud.counts()["registry"] == 1, "nothing was exchanged for it"
    assert json.loads(state_file(home).read_text())["pairs"] == []
    assert "WARNING" not in daemon.log()
