"""``menda-keyring doctor`` reports a running menda-credd and exchanges through it."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.world import FakeWorld
from tests.support.daemon import Daemon
from tests.support.doctor import doctor, doctor_env, write_project
from tests.support.env import short_tmpdir
from tests.support.installers import Sandbox

pytestmark = pytest.mark.daemon


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


def test_doctor_exchanges_through_a_running_daemon_and_names_it(
    world: FakeWorld, tmp_path: Path
) -> None:
    with short_tmpdir() as run_dir:
        box = Sandbox.create(tmp_path / "sandbox", run_dir)
        env = doctor_env(world, box)
        project = write_project(tmp_path / "project")
        before = doctor(env, project)
        assert "not running" in before.named("daemon")[0]["found"], before.describe()
        assert "in process" in before.named("exchange")[0]["found"]
        with Daemon(env, box.socket, log_path=tmp_path / "credd.log") as daemon:
            requests = daemon.counters()["requests"]
            during = doctor(env, project)
            assert during.run.returncode == 0, during.describe()
            state = during.named("daemon")[0]["found"]
            assert f"pid {daemon.pid}" in state and "running" in state, state
            assert "through menda-credd" in during.named("exchange")[0]["found"]
            assert daemon.counters()["requests"] > requests  # it really asked the daemon
            assert world.client_secret not in during.run.stdout


def test_a_silent_daemon_fails_the_daemon_link_only(world: FakeWorld, tmp_path: Path) -> None:
    with short_tmpdir() as run_dir:
        box = Sandbox.create(tmp_path / "sandbox", run_dir)
        env = doctor_env(world, box)
        project = write_project(tmp_path / "project")
        with Daemon(env, box.socket, log_path=tmp_path / "credd.log") as daemon:
            daemon.signal(signal.SIGSTOP)
            try:
                verdicts = doctor(env, project, "--timeout", "2")
            finally:
                daemon.signal(signal.SIGCONT)
        check = verdicts.only_failure("daemon")
        assert "does not answer" in check["found"]
        assert "in process" in verdicts.named("exchange")[0]["found"]
