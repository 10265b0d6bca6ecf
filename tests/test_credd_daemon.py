"""A real menda-credd against the real HTTP fake of menda-cloud, driven by the real keyring CLI."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from menda_keyring.daemon_client import request_line, round_trip
from menda_keyring.daemon_protocol import TokenReply, get_request
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import (
    CA_URL,
    CLIENT_SECRET,
    m2m_env,
    write_profile,
    write_user_token,
)
from tests.support.errors import typed_error
from tests.support.procs import credd, keyring_get, keyring_herd
from tests.support.sockets import raw_exchange
from tests.support.waiting import wait_until


@pytest.fixture
def env(home: Path, cloud: FakeMendaCloud, sockdir: Path) -> dict[str, str]:
    return m2m_env(home, cloud, MENDA_CREDD_SOCKET=str(sockdir / "c.sock"))


@pytest.fixture
def daemon(env: dict[str, str]) -> Iterator[Daemon]:
    with Daemon(env, env["MENDA_CREDD_SOCKET"]) as running:
        yield running


def test_keyring_get_is_answered_by_the_daemon(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    first = keyring_get(env)
    assert first.returncode == 0, first.stderr
    assert cloud.is_valid_registry_token(first.stdout.strip(), "menda-private")
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 1, "registry_ok": 1}
    before = json.loads(credd("status", "--json", env=env).stdout)["counters"]

    second = keyring_get(env)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    # menda-cloud saw nothing new; the daemon's counters moved: it answered from memory.
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 1, "registry_ok": 1}
    after = json.loads(credd("status", "--json", env=env).stdout)["counters"]
    assert after["requests"] == before["requests"] + 1 == 2
    assert after["hits"] == before["hits"] + 1 == 1
    assert after["waits"] == 1
    assert after["exchanges_oauth"] == after["exchanges_registry"] == 1
    # Another repository of the same domain shares the token.
    other = keyring_get(env, CA_URL.replace("menda-plugins", "other-repo"))
    assert other.stdout == first.stdout


def test_a_cold_herd_of_64_processes_makes_one_oauth_and_one_registry_exchange(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    cloud.inject("oauth", delay=0.5)  # a slow first exchange: everybody piles up behind it
    # Not niced: 64 interpreters starting at once starve the daemon of CPU for seconds on
    # two cores; the shim keeps waiting for a daemon that is runnable (starved, not wedged).
    runs = keyring_herd(env, 64)
    assert all(run.ok for run in runs), [run.describe() for run in runs if not run.ok][:3]
    tokens = {run.stdout.strip() for run in runs}
    assert len(tokens) == 1
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 1, "registry_ok": 1}
    counters = daemon.counters()
    assert counters["requests"] == 64
    assert counters["exchanges_oauth"] == counters["exchanges_registry"] == 1


def test_short_lived_tokens_are_refreshed_ahead_and_never_served_expired(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    cloud.configure(registry_token_lifetime=8)
    request = get_request(CA_URL, "aws", env)
    received: list[tuple[float, float, str, bool]] = []  # (asked, answered, token, by CLI)
    end = time.time() + 20.0
    cli_every, next_cli = 2.0, time.time() + 1.0
    while time.time() < end:
        asked = time.time()
        by_cli = asked >= next_cli
        if by_cli:
            result = keyring_get(env)
            assert result.returncode == 0, result.stderr
            token = result.stdout.strip()
            next_cli = time.time() + cli_every
        else:
            reply = round_trip(env["MENDA_CREDD_SOCKET"], request, 30.0)
            assert isinstance(reply, TokenReply), reply
            token = reply.password
            time.sleep(0.02)  # pacing only: about 40 requests a second
        received.append((asked, time.time(), token, by_cli))

    issued = {t["token"]: t for t in cloud.registry_tokens()}
    for _asked, answered, token, by_cli in received:
        assert token in issued, "every answer is a token menda-cloud issued"
        left = issued[token]["expires_at"] - answered
        # Never expired on arrival; straight from the socket, not even in its last stretch.
        assert left > 0 if by_cli else left > 0.5
    distinct = {token for _, _, token, _ in received}
    assert len(distinct) >= 3, "8 s tokens over 20 s: refreshed at least twice"
    counters = daemon.counters()
    assert counters["waits"] == 1, "only the very first request waited on an exchange"
    assert counters["refreshes"] >= 2
    assert counters["failures"] == counters["refresh_failures"] == 0
    # (A refresh may be on its way as we look.)
    assert cloud.counts()["registry"] - (counters["refreshes"] + 1) in (0, 1)
    assert cloud.counts()["oauth"] == 1
    # Every answer after the first came from memory, never from an exchange in line (the
    # bound is loose for loaded machines; "waits == 1" above is the exact proof).
    slow = [b - a for a, b, _, by_cli in received[1:] if not by_cli and b - a > 2.5]
    assert not slow, slow


def test_a_failed_refresh_keeps_serving_the_valid_token_and_retries(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    cloud.configure(registry_token_lifetime=10)
    first = keyring_get(env).stdout.strip()
    cloud.inject("registry", status=403, times=1)  # the next refresh fails for good ...
    request = get_request(CA_URL, "aws", env)

    def refreshed() -> bool:
        reply = round_trip(env["MENDA_CREDD_SOCKET"], request, 30.0)
        assert isinstance(reply, TokenReply), reply
        return reply.password != first

    wait_until(refreshed, timeout=30, interval=0.1, what="a refreshed token")
    counters = daemon.counters()
    assert counters["refresh_failures"] == 1
    assert counters["refreshes"] == 1
    assert counters["waits"] == 1 and counters["failures"] == 0


def test_a_background_refresh_makes_one_http_try_per_attempt(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    cloud.configure(registry_token_lifetime=12)
    first = keyring_get(env).stdout.strip()
    cloud.inject("registry", status=503, times=2)  # the next two registry calls fail
    request = get_request(CA_URL, "aws", env)

    def refreshed() -> bool:
        reply = round_trip(env["MENDA_CREDD_SOCKET"], request, 30.0)
        assert isinstance(reply, TokenReply), reply
        return reply.password != first

    wait_until(refreshed, timeout=40, interval=0.1, what="a refreshed token")
    counters = daemon.counters()
    # Two refresh attempts failed, one HTTP try each (the refresh timer backs off between
    # them), then the third got a token; before, the first attempt retried twice inside.
    assert counters["refresh_failures"] == 2
    assert counters["refreshes"] == 1
    assert counters["waits"] == 1 and counters["failures"] == 0
    assert cloud.counts()["registry"] == 1 + 2 + 1
    assert counters["exchanges_registry"] == 4


def test_sigkill_mid_use_falls_back_in_process_and_start_recovers_the_stale_socket(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    assert keyring_get(env).returncode == 0
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait(10)  # type: ignore[union-attr]
    assert os.path.exists(env["MENDA_CREDD_SOCKET"]), "a killed daemon leaves its socket"

    result = keyring_get(env)
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip())
    # In process: a new registry exchange, but the machine token came from the shared disk
    # cache the daemon had written through to.
    assert cloud.counts()["registry"] == 2
    assert cloud.counts()["oauth"] == 1

    started = credd("start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith("menda-credd started (pid ")
        assert env["MENDA_CREDD_SOCKET"] in started.stdout
        again = credd("start", env=env)
        assert again.returncode == 0
        assert again.stdout.startswith("menda-credd already running (pid ")
        assert keyring_get(env).returncode == 0
        status = json.loads(credd("status", "--json", env=env).stdout)
        assert status["counters"]["requests"] == 1
    finally:
        stopped = credd("stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("menda-credd stopped")
    assert not os.path.exists(env["MENDA_CREDD_SOCKET"])
    gone = credd("stop", env=env)
    assert (gone.returncode, gone.stdout.strip()) == (0, "menda-credd not running")
    assert credd("status", env=env).returncode == 3


def test_a_stopped_daemon_does_not_hang_keyring(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    assert keyring_get(env).returncode == 0
    os.kill(daemon.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = keyring_get(env, timeout=30)
        elapsed = time.monotonic() - began
        assert result.returncode == 0, result.stderr
        assert cloud.is_valid_registry_token(result.stdout.strip())
        assert elapsed < 6.0
        # The CLI tells a wedged daemon from an absent one, and can still stop it.
        status = credd("status", env=env)
        assert status.returncode == 3
        assert f"(pid {daemon.pid}) holds" in status.stdout
        stopped = credd("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.startswith("menda-credd stopped")
    finally:
        os.kill(daemon.pid, signal.SIGCONT)
    assert daemon.proc is not None and daemon.proc.wait(30) == 0


def test_status_never_shows_a_secret_or_token(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    user_token, expires = cloud.issue_user_token("alice")
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    write_user_token(home, "default", user_token, expires, cloud.url)
    u2m_env = {k: v for k, v in env.items() if k not in ("MENDA_CLIENT_ID", "MENDA_CLIENT_SECRET")}
    assert keyring_get(env).returncode == 0
    assert keyring_get(u2m_env).returncode == 0
    human = credd("status", env=env)
    as_json = credd("status", "--json", env=env)
    assert human.returncode == as_json.returncode == 0
    status = json.loads(as_json.stdout)
    assert len(status["entries"]) == 2
    assert {e["identity"].split(" ")[0] for e in status["entries"]} == {"env", "profile"}
    secrets = [
        CLIENT_SECRET,
        user_token,
        *cloud.access_tokens,
        *(t["token"] for t in cloud.registry_tokens()),
    ]
    for text in (human.stdout, as_json.stdout, daemon.log()):
        for secret in secrets:
            assert secret not in text
        for prefix in ("caat_", "mat_", "mut_"):
            assert prefix not in text
    assert "menda-private" in human.stdout and "valid" in human.stdout


def test_unused_entries_are_dropped_after_the_idle_timeout(
    cloud: FakeMendaCloud, env: dict[str, str]
) -> None:
    with Daemon(env, env["MENDA_CREDD_SOCKET"], "--idle-timeout", "1s") as daemon:
        assert keyring_get(env).returncode == 0
        assert len(daemon.status()["entries"]) == 1
        wait_until(lambda: not daemon.status()["entries"], timeout=15, what="the entry to go")
        assert daemon.counters()["entries_dropped"] == 1
        assert keyring_get(env).returncode == 0
        assert cloud.counts()["registry"] == 2


def test_new_login_and_config_edits_are_noticed_without_restart(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str], home: Path
) -> None:
    u2m_env = {k: v for k, v in env.items() if k not in ("MENDA_CLIENT_ID", "MENDA_CLIENT_SECRET")}
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    before = keyring_get(u2m_env)
    assert before.returncode == 1
    assert typed_error(before.stderr)[0] == "NoCachedLoginError"

    token, expires = cloud.issue_user_token("alice")
    write_user_token(home, "default", token, expires, cloud.url)  # menda auth login
    after = keyring_get(u2m_env)
    assert after.returncode == 0, after.stderr
    assert cloud.is_valid_registry_token(after.stdout.strip())
    assert keyring_get(u2m_env).stdout == after.stdout  # from memory now

    # menda auth logout: the daemon stops answering for that login at once, as in process.
    (home / ".menda" / "tokens" / "cache" / ".token").write_text('{"version": 1, "tokens": {}}')
    logged_out = keyring_get(u2m_env)
    assert logged_out.returncode == 1
    assert typed_error(logged_out.stderr)[0] == "NoCachedLoginError"

    # Signing in as someone else never gets the previous user's registry token.
    token, expires = cloud.issue_user_token("bob")
    write_user_token(home, "default", token, expires, cloud.url)
    bob = keyring_get(u2m_env)
    assert bob.returncode == 0, bob.stderr
    assert bob.stdout != after.stdout
    assert cloud.is_valid_registry_token(bob.stdout.strip())

    # Switch the profile to machine credentials: the very next request uses them.
    write_profile(
        home,
        f"[default]\nhost = {cloud.url}\nauth_type = m2m\n"
        f"client_id = ci-bot\nclient_secret = {CLIENT_SECRET}\n",
    )
    oauth_before = cloud.counts()["oauth"]
    switched = keyring_get(u2m_env)
    assert switched.returncode == 0, switched.stderr
    assert cloud.counts()["oauth"] == oauth_before + 1
    assert daemon.counters()["requests"] == 6


def test_heartbeats_flow_while_an_exchange_is_slow(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    cloud.inject("registry", delay=1.5)
    data = raw_exchange(env["MENDA_CREDD_SOCKET"], request_line(CA_URL, "aws", env), 30.0)
    lines = [json.loads(line) for line in data.splitlines()]
    assert lines[:-1] and all(line == {"v": 1, "wait": True} for line in lines[:-1])
    assert len(lines) - 1 >= 2  # at least one every HEARTBEAT (0.5 s) of a 1.5 s wait
    assert lines[-1]["ok"] is True and cloud.is_valid_registry_token(lines[-1]["password"])


def test_a_rejected_machine_token_is_replaced_once_and_the_exchange_retried(
    cloud: FakeMendaCloud, daemon: Daemon, env: dict[str, str]
) -> None:
    assert keyring_get(env).returncode == 0
    cloud.revoke_all()  # the daemon's machine token (memory and disk) is now refused
    cloud.add_domain("second-domain")
    result = keyring_get(env, CA_URL.replace("menda-private-", "second-domain-"))
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip(), "second-domain")
    counts = cloud.counts()
    assert (counts["oauth"], counts["registry"], counts["registry_ok"]) == (2, 3, 2)
    assert daemon.counters()["exchanges_oauth"] == 2
