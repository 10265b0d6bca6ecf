"""The real ``twine upload`` and ``uv publish`` put a wheel into the fake CodeArtifact repository.

The upload URL is the repository's own (``https://<domain>-<owner>.d.codeartifact.<region>
.amazonaws.com/pypi/<repo>/``, the simple index without ``simple/``); no password is given.
What each asks (read in their sources; seen with :func:`logging_keyring_bin` for uv):

* twine 7 (keyring and menda-keyring in its venv): ``get_password(<upload URL>, "aws")``.
* ``uv publish --username aws --keyring-provider subprocess``: ``keyring get <upload URL>
  aws`` (then the bare host, when that fails).

After the upload the simple index serves the wheel, and uv installs it from there. The
controls run without menda-keyring: uv publish gets the index's 401; twine finds no
password in its keyring and, non-interactive, refuses before sending anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.wheels import build_wheel
from tests.fakes.world import FakeWorld
from tests.support import e2e_case
from tests.support.e2e_case import Case, open_case
from tests.support.env import CA_URL
from tests.support.installers import UV, keyring_only_bin, make_venv, uv_pip_install
from tests.support.procs import Run, run
from tests.support.tools import TWINE

pytestmark = pytest.mark.e2e
#: The shared fixtures: one world per module, a case per test and mode.
world = e2e_case.world
case = e2e_case.case

UPLOAD_URL = CA_URL.replace("https://aws@", "https://").removesuffix("simple/")
TIMEOUT = 120.0
KINDS = ["twine", "uv-publish"]


def publish(case: Case, kind: str, wheel: Path, with_menda: bool) -> Run:
    if kind == "twine":
        command = [
            TWINE.bin(with_menda),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            UPLOAD_URL,
            "--username",
            "aws",
            wheel,
        ]
        env = {**case.env, "REQUESTS_CA_BUNDLE": str(case.world.ca_pem)}
        return run(command, env, cwd=case.tmp, timeout=TIMEOUT)
    # uv runs the `keyring` first on PATH: the project's (with menda-keyring) or, for the
    # control, the one of twine's bare venv (keyring alone).
    if not with_menda:
        keyring_only_bin(case.box.bin, TWINE.bin(False, "keyring"))
    command = [
        UV,
        "publish",
        "--publish-url",
        UPLOAD_URL,
        "--username",
        "aws",
        "--keyring-provider",
        "subprocess",
        wheel,
    ]
    return run(command, {**case.env, "UV_NO_CONFIG": "1"}, cwd=case.tmp, timeout=TIMEOUT)


def new_wheel(case: Case, kind: str) -> Path:
    """A wheel of a project no other case uploads (the world is shared by the module)."""
    name = f"menda-{kind}-{case.mode}-{case.tmp.name}".lower().replace("_", "-")
    return build_wheel(case.tmp / "dist", name=name, version="1.0.0", greeting=f"from {name}")


@pytest.mark.parametrize("kind", KINDS)
def test_publish_through_menda_keyring(case: Case, kind: str) -> None:
    wheel = new_wheel(case, kind)
    result = publish(case, kind, wheel, with_menda=True)
    result.check()
    index, cloud = case.world.index.counts(), case.world.cloud.counts()
    assert index["uploads"] == 1, index
    assert cloud["registry_ok"] == 1, cloud
    assert (case.world.index.dist_dir / wheel.name).read_bytes() == wheel.read_bytes()
    case.assert_no_secrets(result.stdout + result.stderr, f"{kind} output")
    if case.daemon is not None:
        counters = case.daemon.counters()
        assert counters["exchanges_registry"] == 1 and counters["failures"] == 0, counters

    # The upload is served by the index at once: uv installs it through the keyring.
    python = make_venv(case.tmp / "target", case.env)
    project = wheel.name.split("-", 1)[0].replace("_", "-")
    installed = uv_pip_install(python, CA_URL, project, case.env, case.tmp)
    installed.check()
    assert case.world.index.counts()["downloads"] >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_without_menda_keyring_nothing_is_published(
    world: FakeWorld, tmp_path: Path, kind: str
) -> None:
    with open_case(world, "in-process", tmp_path) as case:
        wheel = new_wheel(case, kind)
        result = publish(case, kind, wheel, with_menda=False)
    assert result.returncode != 0, result.describe()
    index, cloud = world.index.counts(), world.cloud.counts()
    assert index["uploads"] == 0 and index["authorized"] == 0, index
    assert cloud["registry"] == 0, cloud
    assert not (world.index.dist_dir / wheel.name).exists()
    if kind == "uv-publish":
        assert index["unauthorized"] >= 1, index
        assert "401 Unauthorized" in result.stderr, result.describe()
    else:
        # twine asks its keyring, finds nothing and, non-interactive, sends nothing.
        assert "Credential not found for password" in result.stdout + result.stderr
        assert index["unauthorized"] == 0, index
