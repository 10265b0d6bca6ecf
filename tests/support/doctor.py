"""Running the real ``menda-keyring doctor`` against the fakes, and reading its verdicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.world import FakeWorld
from tests.support.env import BIN
from tests.support.installers import Sandbox, installer_env
from tests.support.procs import Run, run

MENDA_KEYRING = BIN / "menda-keyring"
#: The bare index URL a uv project declares (uv adds no user name of its own).
PROJECT_INDEX = (
    "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/menda-plugins/simple/"
)


def write_project(folder: Path, *, authenticate: bool = True, provider: str = "subprocess") -> Path:
    """A uv project with one named CodeArtifact index, as the README configures it."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[project]",
        'name = "demo"',
        'version = "0.1.0"',
        "[tool.uv]",
        f'keyring-provider = "{provider}"',
        "[[tool.uv.index]]",
        'name = "menda-private"',
        f'url = "{PROJECT_INDEX}"',
    ]
    if authenticate:
        lines.append('authenticate = "always"')
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return folder


def doctor_env(world: FakeWorld, box: Sandbox, **extra: str) -> dict[str, str]:
    """What a user's shell would have: the machine identity trio, the proxy and its CA."""
    identity = {
        "MENDA_CLIENT_ID": world.client_id,
        "MENDA_CLIENT_SECRET": world.client_secret,
        "MENDA_HOST": world.cloud_url,
    }
    return installer_env(
        box, proxy_url=world.proxy_url, ca_pem=world.ca_pem, identity=identity, **extra
    )


@dataclass
class Verdicts:
    """One doctor run: its process and the checks of its ``--json`` document."""

    run: Run
    document: dict[str, Any]

    @property
    def checks(self) -> list[dict[str, Any]]:
        return list(self.document["checks"])

    def named(self, prefix: str) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["name"].startswith(prefix)]

    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if c["status"] == "fail"]

    def status_of(self, prefix: str) -> str:
        found = self.named(prefix)
        assert found, f"no check named {prefix!r} in {self.describe()}"
        return str(found[0]["status"])

    def describe(self) -> str:
        return "\n".join(f"{c['status']:>7} {c['name']}: {c['found']}" for c in self.checks)

    def only_failure(self, prefix: str) -> dict[str, Any]:
        """The one failed check, asserted to be ``prefix``'s, with exit status 1."""
        failed = self.failed()
        assert len(failed) == 1 and failed[0].startswith(prefix), self.describe()
        assert self.run.returncode == 1, self.run.describe()
        check = self.named(prefix)[0]
        assert check["fix"], check
        return check


def doctor(env: dict[str, str], cwd: Path, *args: str, timeout: float = 90.0) -> Verdicts:
    """``menda-keyring doctor --json ARGS`` in ``cwd``."""
    result = run([MENDA_KEYRING, "doctor", "--json", *args], env, cwd=cwd, timeout=timeout)
    assert result.returncode in (0, 1), result.describe()
    return Verdicts(result, json.loads(result.stdout))
