"""The real Poetry and PDM lock and install a private package through menda-keyring.

Each tool runs from its own venv (``tests/support/tools.py``: the tool, keyring and
menda-keyring built from this checkout, as ``poetry self add menda-keyring`` leaves it) in
a sandbox built from scratch, against the fake CodeArtifact index behind the HTTPS proxy.
The project declares the README's source with no password anywhere. What each asks (read
in their sources, see the README):

* Poetry 2.5: ``get_password("poetry-repository-menda-private", <empty-user marker>)``
  (not ours: None at once), then ``get_credential(<source URL>, None)`` up front; one
  Authenticator per resolver or installer, each asking once.
* PDM 2.29: ``get_credential("pdm-pypi-menda-private", "aws")`` (not ours), then after
  the index's first 401 ``get_credential(<source URL>, "aws")``.

``poetry install`` used to cost two registry exchanges (its two Authenticators); the
process's token memory makes it one. Through a daemon, the install costs none: the
daemon still holds the token the lock obtained. The control runs the same tool from a
venv without menda-keyring: the index answers 401 and the tool fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.wheels import GREETING
from tests.fakes.world import FakeWorld
from tests.support import e2e_case
from tests.support.e2e_case import Case, open_case
from tests.support.env import CA_URL
from tests.support.installers import DEMO_PROJECT, import_greeting, make_venv
from tests.support.procs import Run, run
from tests.support.tools import PDM, POETRY

pytestmark = pytest.mark.e2e
#: The shared fixtures: one world per module, a case per test and mode.
world = e2e_case.world
case = e2e_case.case

SOURCE_URL = CA_URL.replace("https://aws@", "https://")
TIMEOUT = 240.0

POETRY_PROJECT = f"""\
{DEMO_PROJECT}
[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
menda-hello = {{ source = "menda-private" }}

[[tool.poetry.source]]
name = "menda-private"
url = "{SOURCE_URL}"
priority = "explicit"
"""

PDM_PROJECT = f"""\
{DEMO_PROJECT}
[tool.pdm]
distribution = false

[[tool.pdm.source]]
name = "menda-private"
url = "{SOURCE_URL}"
username = "aws"
"""


def poetry_env(case: Case, step: str) -> dict[str, str]:
    return {
        **case.env,
        # requests trusts certifi, not SSL_CERT_FILE: the fake proxy's CA, as a corporate one.
        "REQUESTS_CA_BUNDLE": str(case.world.ca_pem),
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_VIRTUALENVS_USE_POETRY_PYTHON": "true",
        "POETRY_NO_INTERACTION": "1",
        # A cache per step, so that the install downloads (and authenticates) again.
        "POETRY_CACHE_DIR": str(case.box.cache / f"poetry-{step}"),
    }


def pdm_env(case: Case, step: str) -> dict[str, str]:
    return {
        **case.env,
        # The project's own venv (made by the test with uv), as `pdm use .venv` would pick.
        "PDM_PYTHON": str(case.tmp / "demo-app" / ".venv" / "bin" / "python"),
        # No PyPI here: only the project's own source (a test setting, not the README's).
        "PDM_IGNORE_STORED_INDEX": "1",
        "PDM_CHECK_UPDATE": "false",
        "PDM_NON_INTERACTIVE": "1",
        "PDM_CACHE_DIR": str(case.box.cache / f"pdm-{step}"),
    }


TOOLS = {
    "poetry": (POETRY, POETRY_PROJECT, poetry_env, "poetry.lock"),
    "pdm": (PDM, PDM_PROJECT, pdm_env, "pdm.lock"),
}


def lock_and_install(
    case: Case, kind: str, with_menda: bool
) -> tuple[list[Run], list[dict[str, int]]]:
    """``<tool> lock`` then ``<tool> install``; the runs and menda-cloud's counts after each."""
    tool, project_text, env_for, _lockfile = TOOLS[kind]
    program = tool.bin(with_menda)
    project = case.tmp / "demo-app"
    project.mkdir()
    (project / "pyproject.toml").write_text(project_text)
    if tool is PDM:
        make_venv(project / ".venv", case.env)
    runs, counts = [], []
    for step in ("lock", "install"):
        case.world.cloud.reset_counts()
        result = run([program, step], env_for(case, step), cwd=project, timeout=TIMEOUT)
        runs.append(result)
        counts.append(case.world.cloud.counts())
        if result.returncode != 0:
            break
    return runs, counts


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_lock_and_install_through_menda_keyring(case: Case, kind: str) -> None:
    runs, counts = lock_and_install(case, kind, with_menda=True)
    for result in runs:
        result.check()
    lock, install = counts
    assert lock["registry_ok"] == 1, lock
    if case.daemon is None:
        # One process, one exchange: the second ask is served from the process's memory.
        assert install["registry"] == 1, install
    else:
        assert install["registry"] == 0, install  # the daemon still holds the lock's token
        counters = case.daemon.counters()
        assert counters["exchanges_registry"] == 1, counters
        assert counters["hits"] >= 1, counters
        assert counters["failures"] == 0, counters

    project = case.tmp / "demo-app"
    imported = import_greeting(project / ".venv" / "bin" / "python")
    assert imported.returncode == 0, imported.describe()
    assert imported.stdout.splitlines()[0] == GREETING
    index = case.world.index.counts()
    assert index["authorized"] >= 2 and index["downloads"] >= 1, index

    lockfile = (project / TOOLS[kind][3]).read_text()
    assert "menda-hello" in lockfile
    assert "aws:" not in lockfile and "aws@" not in lockfile
    case.assert_no_secrets(lockfile, TOOLS[kind][3])
    case.assert_no_secrets("\n".join(r.stdout + r.stderr for r in runs), f"{kind} output")


@pytest.mark.parametrize("kind", sorted(TOOLS))
def test_without_menda_keyring_the_index_answers_401(
    world: FakeWorld, tmp_path: Path, kind: str
) -> None:
    with open_case(world, "in-process", tmp_path) as case:
        runs, _counts = lock_and_install(case, kind, with_menda=False)
    assert runs[0].returncode != 0, runs[0].describe()
    index, cloud = world.index.counts(), world.cloud.counts()
    assert index["unauthorized"] >= 1 and index["authorized"] == 0, index
    assert cloud["registry"] == 0 and cloud["oauth"] == 0, cloud
