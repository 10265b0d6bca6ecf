"""Hardening: a wedged or crashed daemon never hangs ``keyring get``, and a daemon restarted
after a crash reuses nothing stale."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.daemon import Daemon
from tests.support.env import CA_URL, CLIENT_ID, KEYRING, base_env, m2m_env, sentinel, short_tmpdir
from tests.support.procs import Run, keyring_get
from tests.support.waiting import wait_until

#: A wedged or vanished daemon must cost at most this much before in-process resolution.
FALLBACK_BOUND = 10.0


@dataclass
class Setup:
    cloud: FakeMendaCloud
    env: dict[str, str]
    socket: Path
    daemon_env: dict[str, str]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    secret = sentinel()
    with short_tmpdir() as tmp, FakeMendaCloud() as cloud:
        cloud.add_client(CLIENT_ID, secret)
        home = tmp_path / "home"
        home.mkdir()
        sock = tmp / "run" / "credd.sock"
        env = m2m_env(
            home, cloud, secret=secret, MENDA_CREDD_SOCKET=str(sock), MENDA_KEYRING_TIMEOUT="20"
        )
        yield Setup(cloud, env, sock, base_env(tmp / "daemon-home"))


def test_a_stopped_daemon_is_bypassed_within_seconds(setup: Setup) -> None:
    with Daemon(setup.daemon_env, setup.socket) as daemon:
        primed = keyring_get(setup.env)
        assert primed.ok, primed.describe()
        assert setup.cloud.counts()["registry"] == 1
        daemon.signal(signal.SIGSTOP)
        try:
            result = keyring_get(setup.env, timeout=60)
            assert result.ok, result.describe()
            assert result.elapsed < FALLBACK_BOUND, result.describe()
            assert setup.cloud.is_valid_registry_token(result.token)
            # Resolved in process: the wedged daemon could not have made this exchange.
            assert setup.cloud.counts()["registry"] == 2
        finally:
            daemon.signal(signal.SIGCONT)
        # Woken up, it serves again (and was not harmed by the abandoned connection).
        wait_until(daemon.answers, what="the resumed daemon to answer")
        again = keyring_get(setup.env)
        assert again.token == primed.token
        assert setup.cloud.counts()["registry"] == 2


def test_a_daemon_killed_mid_request_is_survived_and_a_restart_reuses_nothing(
    setup: Setup,
) -> None:
    cloud = setup.cloud
    daemon = Daemon(setup.daemon_env, setup.socket).start()
    try:
        primed = keyring_get(setup.env, service=CA_URL.replace("menda-plugins", "other-repo"))
        assert primed.ok, primed.describe()
        # A new domain, so the daemon must exchange; menda-cloud is slow to answer it.
        cloud.add_domain("slow", "058264169513")
        service = CA_URL.replace("menda-private", "slow")
        cloud.inject("registry", delay=8)
        started = time.monotonic()
        waiting = subprocess.Popen(
            [KEYRING, "get", service, "aws"],
            env=setup.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # The daemon is inside the slow exchange: kill it there.
            wait_until(lambda: cloud.counts()["registry"] >= 2, what="the daemon's exchange")
            daemon.kill()
            out, err = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
        result = Run([KEYRING, "get", service], waiting.returncode, out, err, 0.0)
        result.elapsed = time.monotonic() - started
        assert result.ok, result.describe()
        assert result.elapsed < FALLBACK_BOUND, result.describe()
        assert cloud.is_valid_registry_token(result.token, "slow")

        # Dead daemon, stale socket file: a fast, silent fallback.
        assert setup.socket.exists()
        stale = keyring_get(setup.env)
        assert stale.ok and stale.elapsed < FALLBACK_BOUND, stale.describe()

        # Everything issued so far is revoked before the restart.
        issued = {t["token"] for t in cloud.registry_tokens()}
        for token in issued:
            cloud.revoke(token)
        cloud.revoke_all()
        before = cloud.counts()
        daemon = Daemon(setup.daemon_env, setup.socket).start()
        status = daemon.cli_status_json()
        assert status["entries"] == []
        assert status["counters"]["exchanges_registry"] == 0
        fresh = keyring_get(setup.env)
        assert fresh.ok, fresh.describe()
        assert fresh.token not in issued
        assert cloud.is_valid_registry_token(fresh.token)
        after = cloud.counts()
        # The revoked Menda token on disk was rejected once and replaced.
        assert after["oauth_ok"] == before["oauth_ok"] + 1
        assert after["registry_ok"] == before["registry_ok"] + 1
        assert daemon.counters()["exchanges_registry"] >= 1, "the new daemon answered"
    finally:
        if daemon.alive():
            daemon.stop()
