"""One end-to-end test's world view, shared by the installer and tool tests.

A :class:`Case` is a sandbox (own home, XDG folders, caches, socket folder), the
environment built from scratch for the program under test (proxy, CA, the MENDA_* trio
of the fake world's machine client) and, in ``daemon`` mode, a real ``menda-credd``
answering on the sandbox's socket. The world's counters are reset for each case.

The fixtures ``world`` (one per test module) and ``case`` (per test, once per mode) are
imported by the test modules that use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.world import FakeWorld
from tests.support.daemon import Daemon
from tests.support.env import short_tmpdir
from tests.support.installers import Sandbox, installer_env

#: Each case runs with the backend resolving in process, and through a daemon.
MODES = ["in-process", "daemon"]


@dataclass
class Case:
    """One test's world view: sandbox, environment and (in daemon mode) the daemon."""

    world: FakeWorld
    box: Sandbox
    mode: str
    tmp: Path
    env: dict[str, str]
    daemon: Daemon | None
    tokens_before: set[str]

    def new_tokens(self) -> set[str]:
        return {t["token"] for t in self.world.cloud.registry_tokens()} - self.tokens_before

    def assert_no_secrets(self, text: str, where: str) -> None:
        assert self.world.client_secret not in text, f"client secret leaked into {where}"
        for token in self.new_tokens():
            assert token not in text, f"a registry token leaked into {where}"


@contextlib.contextmanager
def open_case(world: FakeWorld, mode: str, tmp_path: Path) -> Iterator[Case]:
    with short_tmpdir() as run_dir:
        box = Sandbox.create(tmp_path / "sandbox", run_dir)
        identity = {
            "MENDA_CLIENT_ID": world.client_id,
            "MENDA_CLIENT_SECRET": world.client_secret,
            "MENDA_HOST": world.cloud_url,
        }
        env = installer_env(box, proxy_url=world.proxy_url, ca_pem=world.ca_pem, identity=identity)
        for counted in (world.cloud, world.index, world.proxy):
            counted.reset_counts()
        tokens = {t["token"] for t in world.cloud.registry_tokens()}
        daemon = None
        if mode == "daemon":
            # Started with the identity in its own environment: a caller without one must
            # still get nothing (identity travels with each request, never from the daemon).
            daemon = Daemon(env, box.socket, log_path=tmp_path / "credd.log").start()
        try:
            yield Case(world, box, mode, tmp_path, env, daemon, tokens)
        finally:
            if daemon is not None:
                daemon.stop()


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


@pytest.fixture(params=MODES)
def case(world: FakeWorld, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    with open_case(world, request.param, tmp_path) as opened:
        yield opened
