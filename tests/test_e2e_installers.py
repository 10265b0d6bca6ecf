"""The real uv and pip install a private package through our keyring backend, end to end.

Each installer runs in an environment built from scratch (own HOME, XDG dirs, caches; no
config files) with ``HTTPS_PROXY`` at the fake CONNECT proxy that alone can reach the fake
CodeArtifact host, and a trustme CA in ``SSL_CERT_FILE`` / ``pip --cert``. The index URL
given to the installer has no password: the installer must ask ``keyring``, which finds our
backend, which gets a token from the fake menda-cloud using the MENDA_* trio the keyring
process inherits. What each installer asks (seen with :func:`logging_keyring_bin`):

* ``uv pip install --keyring-provider subprocess`` (URL with ``aws@``):
  ``keyring get <index url> aws``
* uv project, ``[[tool.uv.index]]`` without a user name, ``authenticate = "always"``:
  ``keyring get <index url> --mode creds`` (once for ``uv lock``, once for ``uv sync``);
  uv sends nothing unauthenticated, so a failure is "Missing credentials", not a 401.
* ``pip --keyring-provider subprocess`` (pip 26): ``keyring --mode=creds --output=json get
  <index url> aws``; pip captures the keyring's stderr and shows only the 401.
* ``pip --keyring-provider import``: the backend in pip's own process, no subprocess.

After a failure uv and pip ask once more with just the host name as the service. uv passes
the keyring's stderr through, so our error (a whole traceback, from keyring's CLI) shows.

``mode`` runs each case with the backend resolving in process (no daemon socket) and with a
``menda-credd start --foreground`` daemon answering on ``MENDA_CREDD_SOCKET``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.wheels import GREETING
from tests.fakes.world import FakeWorld
from tests.support.e2e_case import MODES, Case, open_case
from tests.support.env import CA_URL
from tests.support.installers import (
    DEMO_PROJECT,
    PIP,
    UV,
    import_greeting,
    make_venv,
    url_password,
    uv_pip_install,
    without_identity,
)
from tests.support.procs import Run, run

#: What a uv project declares: the bare index URL, no user name, no password.
PROJECT_INDEX_URL = CA_URL.replace("https://aws@", "https://")
KINDS = ["uv-pip", "uv-project", "pip-subprocess", "pip-import"]
CONFIG_NOT_FOUND = "Menda config file not found"


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        assert fake.index_url() == CA_URL, "the fake index host drifted from CA_URL"
        yield fake


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def case(world: FakeWorld, mode: str, tmp_path: Path) -> Iterator[Case]:
    with open_case(world, mode, tmp_path) as opened:
        yield opened


@dataclass
class Outcome:
    """What an installer run left behind, for the assertions."""

    results: list[Run]
    index_url: str
    python: Path | str
    pythonpath: Path | None = None
    lockfile: Path | None = None
    notes: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def last(self) -> Run:
        return self.results[-1]

    def output(self) -> str:
        return "\n".join(r.stdout + r.stderr for r in self.results)


def pip_common(case: Case) -> list[str]:
    return [
        "--no-cache-dir",
        "--no-input",
        "--cert",
        str(case.world.ca_pem),
        "--proxy",
        case.world.proxy_url,
        "--index-url",
        CA_URL,
    ]


def install_uv_pip(case: Case, env: dict[str, str]) -> Outcome:
    python = make_venv(case.tmp / "target", env)
    result = uv_pip_install(python, CA_URL, "menda-hello", env, case.tmp)
    return Outcome([result], CA_URL, python)


PYPROJECT = f"""\
{DEMO_PROJECT}
[tool.uv]
keyring-provider = "subprocess"
package = false

[[tool.uv.index]]
name = "menda-private"
url = "{PROJECT_INDEX_URL}"
authenticate = "always"

[tool.uv.sources]
menda-hello = {{ index = "menda-private" }}
"""


def install_uv_project(case: Case, env: dict[str, str]) -> Outcome:
    project = case.tmp / "demo-app"
    project.mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    results = [run([UV, "lock", "--python", sys.executable], env, cwd=project)]
    notes: dict[str, dict[str, int]] = {}
    if results[0].returncode == 0:
        # A cache of its own, so the sync must download the wheel (and authenticate) again.
        before = case.world.index.counts()
        sync_env = {**env, "UV_CACHE_DIR": str(case.box.cache / "uv-sync")}
        results.append(
            run([UV, "sync", "--locked", "--python", sys.executable], sync_env, cwd=project)
        )
        after = case.world.index.counts()
        notes["sync_index"] = {k: after[k] - before[k] for k in after}
    return Outcome(
        results,
        PROJECT_INDEX_URL,
        project / ".venv" / "bin" / "python",
        lockfile=project / "uv.lock",
        notes=notes,
    )


def install_pip_subprocess(case: Case, env: dict[str, str]) -> Outcome:
    python = make_venv(case.tmp / "target", env)
    result = run(
        [
            *PIP,
            "--python",
            python,
            "install",
            "--keyring-provider",
            "subprocess",
            *pip_common(case),
            "menda-hello",
        ],
        env,
    )
    return Outcome([result], CA_URL, python)


def install_pip_import(case: Case, env: dict[str, str]) -> Outcome:
    # pip imports keyring (and so our backend) from the interpreter it runs in: the project
    # venv's, installing into a plain --target folder. No keyring on PATH at all, so a
    # success cannot have come from a keyring subprocess.
    target = case.tmp / "site"
    no_keyring_path = {**env, "PATH": "/usr/bin:/bin"}
    result = run(
        [
            *PIP,
            "install",
            "--target",
            target,
            "--keyring-provider",
            "import",
            *pip_common(case),
            "menda-hello",
        ],
        no_keyring_path,
    )
    return Outcome([result], CA_URL, sys.executable, pythonpath=target)


INSTALLERS: dict[str, Callable[[Case, dict[str, str]], Outcome]] = {
    "uv-pip": install_uv_pip,
    "uv-project": install_uv_project,
    "pip-subprocess": install_pip_subprocess,
    "pip-import": install_pip_import,
}


@pytest.mark.parametrize("kind", KINDS)
def test_installs_through_the_keyring_backend(case: Case, kind: str) -> None:
    world = case.world
    outcome = INSTALLERS[kind](case, case.env)
    for result in outcome.results:
        result.check()

    # The installer was given no password: whatever authenticated came from keyring.
    assert url_password(outcome.index_url) is None
    assert not any(k.endswith(("INDEX_URL", "NETRC")) for k in case.env)
    assert not (case.box.home / ".netrc").exists()

    imported = import_greeting(outcome.python, pythonpath=outcome.pythonpath)
    assert imported.returncode == 0, imported.describe()
    greeting, _, origin = imported.stdout.strip().partition("\n")
    assert greeting == GREETING
    if outcome.pythonpath is not None:
        assert Path(origin).is_relative_to(outcome.pythonpath), origin

    cloud, index, proxy = world.cloud.counts(), world.index.counts(), world.proxy.counts()
    assert cloud["oauth_ok"] >= 1, cloud
    assert cloud["registry_ok"] >= 1, cloud
    assert len(case.new_tokens()) >= 1
    assert index["authorized"] >= 1, index
    assert index["downloads"] >= 1, index
    if kind != "uv-project":
        # A user name but no password in the URL: the first request goes out bare and the
        # 401 makes the installer ask keyring. (uv's authenticate = "always" asks up front.)
        assert index["unauthorized"] >= 1, index
    assert proxy["connect_ok"] >= 1, proxy
    # HTTP_PROXY points at the CONNECT-only proxy too: loopback menda-cloud bypassed it.
    assert proxy["rejected"] == 0, proxy

    if kind == "uv-project":
        assert outcome.notes["sync_index"]["authorized"] >= 1, outcome.notes
        assert outcome.notes["sync_index"]["downloads"] >= 1, outcome.notes
        assert outcome.lockfile is not None
        lock = outcome.lockfile.read_text()
        assert PROJECT_INDEX_URL in lock
        assert "aws@" not in lock and "aws:" not in lock
        case.assert_no_secrets(lock, "uv.lock")
    case.assert_no_secrets(outcome.output(), "installer output")

    if case.daemon is not None:
        counters = case.daemon.counters()
        assert counters["requests"] >= 1, counters
        assert counters["exchanges_registry"] >= 1, counters
        assert counters["failures"] == 0, counters
    else:
        assert not case.box.socket.exists()


#: What each installer shows of a keyring failure (pip's subprocess provider captures the
#: keyring's stderr and only reports the 401).
FAILURE_TEXT = {
    "uv-pip": [CONFIG_NOT_FOUND, "401 Unauthorized"],
    # authenticate = "always": uv sends nothing without credentials.
    "uv-project": [CONFIG_NOT_FOUND, "Missing credentials for: " + PROJECT_INDEX_URL],
    "pip-subprocess": ["401 Error, Credentials not correct"],
    "pip-import": [f"Keyring is skipped due to an exception: {CONFIG_NOT_FOUND}"],
}


@pytest.mark.parametrize("kind", KINDS)
def test_without_an_identity_the_install_fails_clearly(case: Case, kind: str) -> None:
    assert not (case.box.home / ".menda" / "mendacfg").exists()
    outcome = INSTALLERS[kind](case, without_identity(case.env))
    assert outcome.last.returncode != 0, outcome.last.describe()
    text = outcome.output()
    for expected in FAILURE_TEXT[kind]:
        assert expected in text, outcome.last.describe()
    if CONFIG_NOT_FOUND in FAILURE_TEXT[kind][0]:
        assert str(case.box.home / ".menda" / "mendacfg") in text

    cloud, index = case.world.cloud.counts(), case.world.index.counts()
    assert cloud["oauth"] == 0 and cloud["registry"] == 0, cloud
    assert not case.new_tokens()
    assert index["authorized"] == 0 and index["downloads"] == 0, index
    if kind == "uv-project":
        assert index["unauthorized"] == 0, index
    else:
        assert index["unauthorized"] >= 1, index
    case.assert_no_secrets(text, "installer output")
    if case.daemon is not None:
        counters = case.daemon.counters()
        assert counters["requests"] >= 1, counters
        assert counters["exchanges_registry"] == 0, counters
