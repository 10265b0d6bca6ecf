"""``menda-keyring exec`` hands the real uv and pip their credentials with no keyring at all.

No ``keyring`` is on ``PATH`` and the installers' keyring providers are off: whatever
authenticates at the fake CodeArtifact index came from the variables exec set. The
environments are built from scratch as in ``test_e2e_installers``.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.wheels import GREETING
from tests.fakes.world import FakeWorld
from tests.support.env import BIN, CA_URL, short_tmpdir
from tests.support.installers import PIP, UV, Sandbox, import_greeting, installer_env, make_venv
from tests.support.procs import Run, run
from tests.test_e2e_installers import PROJECT_INDEX_URL
from tests.test_e2e_installers import PYPROJECT as INSTALLERS_PYPROJECT

pytestmark = pytest.mark.e2e

MENDA_KEYRING = str(BIN / "menda-keyring")
NO_KEYRING_PATH = "/usr/bin:/bin"

#: The e2e installers' project, minus the keyring provider: nothing here may ask a keyring.
PYPROJECT = INSTALLERS_PYPROJECT.replace('keyring-provider = "subprocess"\n', "")
assert "keyring-provider" not in PYPROJECT, "the installers' project changed"


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


@dataclass
class Case:
    world: FakeWorld
    tmp: Path
    env: dict[str, str]

    def exec(self, *command: str | Path, cwd: Path | None = None, **extra: str) -> Run:
        return run(
            [MENDA_KEYRING, "exec", "--", *command],
            {**self.env, **extra},
            cwd=cwd or self.tmp,
            timeout=180,
        )

    def check_installed(self, result: Run, python: Path) -> None:
        result.check()
        imported = import_greeting(python)
        assert imported.returncode == 0, imported.describe()
        assert imported.stdout.startswith(GREETING)
        index = self.world.index.counts()
        assert index["authorized"] >= 1 and index["downloads"] >= 1, index
        cloud = self.world.cloud.counts()
        assert cloud["registry_ok"] == 1, cloud  # one token for the run
        tokens = {t["token"] for t in self.world.cloud.registry_tokens()}
        for token in tokens:
            assert token not in result.stdout + result.stderr, "a token leaked into the output"


@pytest.fixture
def case(world: FakeWorld, tmp_path: Path) -> Iterator[Case]:
    with short_tmpdir() as run_dir:
        box = Sandbox.create(tmp_path / "sandbox", run_dir)
        env = installer_env(
            box,
            proxy_url=world.proxy_url,
            ca_pem=world.ca_pem,
            identity={
                "MENDA_CLIENT_ID": world.client_id,
                "MENDA_CLIENT_SECRET": world.client_secret,
                "MENDA_HOST": world.cloud_url,
            },
            PATH=NO_KEYRING_PATH,
            UV_KEYRING_PROVIDER="disabled",
            PIP_KEYRING_PROVIDER="disabled",
        )
        assert shutil.which("keyring", path=NO_KEYRING_PATH) is None
        for counted in (world.cloud, world.index, world.proxy):
            counted.reset_counts()
        yield Case(world, tmp_path, env)


def test_uv_sync_in_a_project_with_a_named_codeartifact_index(case: Case) -> None:
    project = case.tmp / "demo-app"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    result = case.exec(UV, "sync", "--python", sys.executable, cwd=project)
    case.check_installed(result, project / ".venv" / "bin" / "python")
    lock = (project / "uv.lock").read_text()
    assert PROJECT_INDEX_URL in lock and "aws:" not in lock


def test_uv_pip_install_with_uv_index_url(case: Case) -> None:
    python = make_venv(case.tmp / "target", case.env)
    result = case.exec(
        UV,
        "pip",
        "install",
        "--python",
        python,
        "menda-hello",
        UV_INDEX_URL=CA_URL,
        UV_NO_CONFIG="1",
    )
    case.check_installed(result, python)


def test_pip_install_with_pip_index_url(case: Case) -> None:
    python = make_venv(case.tmp / "target", case.env)
    pip_options = ["--no-cache-dir", "--no-input", "--cert", str(case.world.ca_pem)]
    result = case.exec(
        *PIP,
        "--python",
        python,
        "install",
        *pip_options,
        "--proxy",
        case.world.proxy_url,
        "menda-hello",
        PIP_INDEX_URL=CA_URL,
    )
    case.check_installed(result, python)
