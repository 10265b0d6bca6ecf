"""The README's install commands, run with the real uv against a wheel of this checkout.

The commands are read from the README's Install section, so the docs cannot drift from
what is tested: the package name ``menda-keyring`` in them becomes
``menda-keyring @ file://<wheel>``. ``UV_TOOL_DIR``/``UV_TOOL_BIN_DIR`` point into a
temporary folder; the package index settings are this machine's (as for the wheel test in
``test_error_namespace``), so dependencies come from where ``.ci/run`` got them.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import BIN, CA_URL, CLIENT_ID, CLIENT_SECRET
from tests.support.procs import run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
UV = str(BIN / "uv")


def install_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Install\n(.*?)^## ", text, re.S | re.M)
    assert match, "README has no '## Install' section"
    return match.group(1)


def readme_install_command() -> list[str]:
    """The first ``uv tool install`` line of the Install section's first shell block."""
    block = re.search(r"```sh\n(.*?)```", install_section(), re.S)
    assert block, "the Install section has no ```sh block"
    lines = [line for line in block.group(1).splitlines() if line.startswith("uv tool install ")]
    assert lines, "the Install section's shell block has no 'uv tool install' line"
    return shlex.split(lines[0])


def readme_seed_command() -> list[str]:
    """The short form the README says still works: ``uv tool install keyring --with menda-keyring``."""
    found = re.findall(r"`(uv tool install keyring --with menda-keyring)`", install_section())
    assert found, "the Install section no longer mentions the short form"
    return shlex.split(found[0])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, ROOT]
    run(build, dict(os.environ), timeout=300).check()
    (found,) = dist.glob("menda_keyring-*.whl")
    return found


@pytest.fixture
def cloud_env(cloud: FakeMendaCloud, tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    home.mkdir()
    yield {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "MENDA_CLIENT_ID": CLIENT_ID,
        "MENDA_CLIENT_SECRET": CLIENT_SECRET,
        "MENDA_HOST": cloud.url,
        "MENDA_CREDD_SOCKET": str(home / "no-daemon.sock"),
    }


def uv_tool_install(command: list[str], wheel: Path, tmp_path: Path) -> Path:
    """Run the README's ``command`` with our wheel for ``menda-keyring``; returns the bin dir."""
    assert command[:3] == ["uv", "tool", "install"], command
    requirement = f"menda-keyring @ {wheel.as_uri()}"
    args = [requirement if arg == "menda-keyring" else arg for arg in command[1:]]
    bin_dir = tmp_path / "tool-bin"
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(tmp_path / "tools"),
        "UV_TOOL_BIN_DIR": str(bin_dir),
        "UV_NO_PROGRESS": "1",
    }
    run([UV, *args], env, timeout=600).check()
    return bin_dir


def test_the_readmes_install_command_exposes_keyring_menda_keyring_and_menda_credd(
    wheel: Path, tmp_path: Path, cloud: FakeMendaCloud, cloud_env: dict[str, str]
) -> None:
    command = readme_install_command()
    assert "--with-executables-from" in command
    bin_dir = uv_tool_install(command, wheel, tmp_path)
    assert {p.name for p in bin_dir.iterdir()} >= {"keyring", "menda-keyring", "menda-credd"}

    backends = run([bin_dir / "keyring", "--list-backends"], cloud_env).check()
    assert "menda_keyring.backend.MendaCodeArtifactKeyring (priority: 9.9)" in backends.stdout
    got = run([bin_dir / "keyring", "get", CA_URL, "aws"], cloud_env).check()
    assert cloud.is_valid_registry_token(got.stdout.strip(), "menda-private")
    token = run([bin_dir / "menda-keyring", "token", CA_URL], cloud_env).check()
    assert cloud.is_valid_registry_token(token.stdout.strip(), "menda-private")
    status = run([bin_dir / "menda-credd", "status"], cloud_env)
    assert status.returncode == 3, status.describe()  # "not running", from the real CLI


def test_the_short_form_still_installs_the_backend_but_only_keyring(
    wheel: Path, tmp_path: Path, cloud: FakeMendaCloud, cloud_env: dict[str, str]
) -> None:
    bin_dir = uv_tool_install(readme_seed_command(), wheel, tmp_path)
    assert {p.name for p in bin_dir.iterdir()} == {"keyring"}  # what the README says it lacks
    got = run([bin_dir / "keyring", "get", CA_URL, "aws"], cloud_env).check()
    assert cloud.is_valid_registry_token(got.stdout.strip(), "menda-private")


def test_the_ci_form_exposes_menda_keyring_and_menda_credd(
    wheel: Path, tmp_path: Path, cloud: FakeMendaCloud, cloud_env: dict[str, str]
) -> None:
    text = (ROOT / "README.md").read_text()
    assert "`uv tool install menda-keyring`" in text, "the README's CI form changed"
    bin_dir = uv_tool_install(["uv", "tool", "install", "menda-keyring"], wheel, tmp_path)
    assert {p.name for p in bin_dir.iterdir()} == {"menda-keyring", "menda-credd"}
    shown = run(
        [bin_dir / "menda-keyring", "exec", "--", "sh", "-c", 'printf %s "$UV_INDEX_URL"'],
        {**cloud_env, "UV_INDEX_URL": CA_URL},
    ).check()
    token = shown.stdout.split("aws:", 1)[1].split("@", 1)[0]
    assert cloud.is_valid_registry_token(token, "menda-private")
