"""``menda-keyring token`` and ``exec`` as real processes, resolving in process (no daemon).

``exec`` replaces itself with the command (``execvpe``): the tests check what that promises
(the command's exit status, pid and signals; 127/126 as ``env``), the environment it gets,
and that an index without a token stops it before the command runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import BIN, CA_URL, PYTHON, base_env, m2m_env
from tests.support.procs import Run, run

pytestmark = pytest.mark.cli

MENDA_KEYRING = str(BIN / "menda-keyring")
BARE = CA_URL.replace("https://aws@", "https://")
SECOND_REPO = BARE.replace("/menda-plugins/", "/second-repo/")
#: Prints the variables a child sees that carry credentials, as JSON.
SHOW_ENV = (
    "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    "if k.startswith(('UV_', 'PIP_', 'TWINE_'))}))"
)


def mk(*args: str, env: dict[str, str], cwd: Path | None = None) -> Run:
    return run([MENDA_KEYRING, *args], env, cwd=cwd)


def child_vars(result: Run) -> dict[str, str]:
    assert result.returncode == 0, result.describe()
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_token_prints_a_valid_token_and_nothing_else(cloud: FakeMendaCloud, home: Path) -> None:
    result = mk("token", CA_URL, env=m2m_env(home, cloud))
    assert result.returncode == 0, result.describe()
    assert result.stderr == ""
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    assert cloud.is_valid_registry_token(result.stdout.strip(), "menda-private")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://pypi.org/simple/", "NotCodeArtifactError"),
        (CA_URL, "MendaCloudAPIError"),  # 403: this identity may not use the domain
    ],
)
def test_token_errors_are_one_line_and_exit_1(
    cloud: FakeMendaCloud, home: Path, url: str, kind: str
) -> None:
    cloud.inject("registry", status=403, times=5)
    result = mk("token", url, env=m2m_env(home, cloud))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"menda-keyring: {kind}: ")
    assert result.stderr.count("\n") == 1, result.stderr


def test_exec_fills_url_variables_named_indexes_and_publish_with_one_fetch_per_domain(
    cloud: FakeMendaCloud, home: Path, tmp_path: Path
) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[tool.uv]\n[[tool.uv.index]]\nname = "menda-private"\nurl = "{BARE}"\n'
    )
    env = m2m_env(
        home,
        cloud,
        UV_INDEX_URL=CA_URL,
        PIP_EXTRA_INDEX_URL=f"https://pypi.org/simple/ {SECOND_REPO}",
        PIP_CONFIG_FILE=os.devnull,
        XDG_CONFIG_HOME=str(home / ".config"),
    )
    upload = BARE.removesuffix("simple/")
    before = cloud.counts()["registry"]
    result = mk("exec", "--index", upload, "--", PYTHON, "-c", SHOW_ENV, env=env, cwd=project)
    seen = child_vars(result)
    assert cloud.counts()["registry"] - before == 1  # four indexes, one domain
    token = seen["UV_INDEX_MENDA_PRIVATE_PASSWORD"]
    assert cloud.is_valid_registry_token(token)
    with_token = BARE.replace("https://", f"https://aws:{token}@")
    assert seen["UV_INDEX_MENDA_PRIVATE_USERNAME"] == "aws"
    assert seen["UV_INDEX_URL"] == with_token
    assert seen["PIP_EXTRA_INDEX_URL"] == "https://pypi.org/simple/ " + with_token.replace(
        "/menda-plugins/", "/second-repo/"
    )
    for tool in ("UV_PUBLISH", "TWINE"):
        assert (seen[f"{tool}_USERNAME"], seen[f"{tool}_PASSWORD"]) == ("aws", token)
    assert seen["UV_PUBLISH_URL"] == seen["TWINE_REPOSITORY_URL"] == upload
    assert token not in result.stderr


def test_exec_writes_nothing_into_the_project_or_home(
    cloud: FakeMendaCloud, home: Path, tmp_path: Path
) -> None:
    def files() -> set[Path]:
        # The shared Menda token cache is the backend's, as for any keyring get.
        return {p for p in tmp_path.rglob("*") if ".menda" not in p.parts}

    before = files()
    result = mk(
        "exec", "--", PYTHON, "-c", "pass", env=m2m_env(home, cloud, UV_INDEX=CA_URL), cwd=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert files() == before


def test_an_index_without_a_token_stops_exec_before_the_command_unless_keep_going(
    home: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    env = base_env(home, UV_INDEX_URL=CA_URL)  # no identity at all
    command = ["--", PYTHON, "-c", f"open({str(marker)!r}, 'w').close()"]
    stopped = mk("exec", *command, env=env)
    assert stopped.returncode == 1
    assert not marker.exists()
    assert stopped.stderr.startswith(f"menda-keyring: no token for index {BARE} (UV_INDEX_URL): ")
    assert "ConfigFileNotFoundError" in stopped.stderr and stopped.stderr.count("\n") == 1
    going = mk("exec", "--keep-going", *command, env=env)
    assert going.returncode == 0, going.describe()
    assert marker.exists()
    assert going.stderr.startswith("menda-keyring: warning (running the command anyway): ")


def test_exec_returns_the_commands_exit_status_and_runs_as_the_same_process(
    home: Path, tmp_path: Path
) -> None:
    env = base_env(home)
    code = "import os, sys; print(os.getpid()); sys.exit(42)"
    proc = subprocess.run(
        [MENDA_KEYRING, "exec", "--", PYTHON, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 42
    plain = subprocess.Popen(
        [MENDA_KEYRING, "exec", PYTHON, "-c", "import os; print(os.getpid())"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = plain.communicate(timeout=60)
    assert int(out) == plain.pid  # no "--" needed; and no wrapper process in between


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_sent_to_exec_reach_the_command(home: Path, signum: int) -> None:
    code = (
        "import os, signal, sys\n"
        "signal.signal(int(sys.argv[1]), lambda n, f: (os.write(1, b'got %d' % n), os._exit(7)))\n"
        "os.write(1, b'ready\\n')\n"
        "signal.pause()\n"
    )
    proc = subprocess.Popen(
        [MENDA_KEYRING, "exec", "--", PYTHON, "-c", code, str(int(signum))],
        env=base_env(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 7
        assert proc.stdout.read().strip() == f"got {int(signum)}"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_command_starts_with_sigpipe_at_its_default(home: Path) -> None:
    result = mk("exec", "--", "sh", "-c", "grep SigIgn /proc/$$/status", env=base_env(home))
    ignored = int(result.stdout.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)), result.stdout


def test_command_not_found_is_127_and_not_executable_is_126(home: Path, tmp_path: Path) -> None:
    missing = mk("exec", "--", "no-such-command-menda", env=base_env(home))
    assert missing.returncode == 127
    assert missing.stderr == "menda-keyring exec: no-such-command-menda: command not found\n"
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    denied = mk("exec", "--", str(script), env=base_env(home))
    assert denied.returncode == 126
    assert (
        denied.stderr.startswith(f"menda-keyring exec: {script}: ")
        and denied.stderr.count("\n") == 1
    )
    empty = mk("exec", env=base_env(home))
    assert empty.returncode == 2
