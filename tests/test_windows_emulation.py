"""Windows, as far as our code can tell: the in-process suites with no fcntl and no AF_UNIX.

CPython on Windows has neither ``fcntl`` nor ``socket.AF_UNIX``. Here a
``sitecustomize`` hook (tests/support/windows_emulation.py) takes both away from a
Linux interpreter and from every process it starts, and the in-process suites run
under it (the real ``keyring`` CLI cases included), so that the backend's import,
in-process resolution and the token cache lock are shown not to need them. The
daemon is then skipped with a debug-level reason, and ``menda-credd`` refuses in one
line with exit status 2. What the hook cannot stand in for is listed in its module.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, KEYRING, MENDA_CREDD, base_env, m2m_env
from tests.support.procs import run
from tests.support.windows_emulation import emulated, install

pytestmark = pytest.mark.cli

ROOT = Path(__file__).resolve().parent.parent
#: The suites that resolve in process: the backend's import, identity, the cache, the flow
#: with urllib, TLS, the lock under contention and the real keyring CLI.
IN_PROCESS_FILES = [
    "tests/test_backend_import.py",
    "tests/test_urls.py",
    "tests/test_identity.py",
    "tests/test_cloud_protocol.py",
    "tests/test_token_cache.py",
    "tests/test_in_process.py",
    "tests/test_tls.py",
    "tests/test_keyring_cli.py",
    "tests/test_cache_contention.py",
]


@pytest.fixture
def hook(tmp_path: Path) -> Path:
    return install(tmp_path / "winemu")


def test_the_hook_takes_fcntl_and_unix_sockets_away(hook: Path, home: Path) -> None:
    probe = textwrap.dedent(
        """
        import socket
        print(hasattr(socket, "AF_UNIX"))
        try:
            import fcntl
        except ImportError:
            print("no fcntl")
        """
    )
    result = run([sys.executable, "-c", probe], emulated(base_env(home), hook)).check()
    assert result.stdout.split("\n")[:2] == ["False", "no fcntl"]
    # The control: without the hook the same interpreter has both.
    assert run([sys.executable, "-c", probe], base_env(home)).check().stdout == "True\n"


def test_in_process_suites_pass_without_fcntl_and_af_unix(hook: Path, tmp_path: Path) -> None:
    log = tmp_path / "emulated.log"
    env = emulated({k: v for k, v in base_env(tmp_path).items() if k != "HOME"}, hook, log)
    env["HOME"] = str(Path.home())
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--basetemp={tmp_path / 'inner'}",
        *IN_PROCESS_FILES,
    ]
    result = run(command, env, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # type: ignore[union-attr]
    assert passed >= 150, summary
    # Only the test that needs a Unix socket itself (a wedged fake daemon) is skipped.
    skipped = re.search(r"(\d+) skipped", summary)
    assert skipped is None or int(skipped.group(1)) <= 1, summary
    # The keyring CLI processes the tests started ran emulated too.
    ran = log.read_text().splitlines()
    assert sum(KEYRING in line for line in ran) >= 10, ran[:5]


def test_the_daemon_is_skipped_with_a_debug_reason(
    hook: Path, cloud: FakeMendaCloud, home: Path
) -> None:
    probe = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(message)s")
        from menda_keyring.backend import MendaCodeArtifactKeyring
        print(MendaCodeArtifactKeyring().get_password(sys.argv[1], "aws"))
        """
    )
    env = emulated(m2m_env(home, cloud), hook)  # the daemon not turned off
    result = run([sys.executable, "-c", probe, CA_URL], env).check()
    assert cloud.is_valid_registry_token(result.stdout.strip())
    assert (
        "DEBUG menda-credd cannot be reached here (this Python has no Unix sockets "
        "(socket.AF_UNIX)); resolving in process"
    ) in result.stderr
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr
    # Through the keyring CLI, as uv calls it: a token and not a word on stderr.
    cli = run([KEYRING, "get", CA_URL, "aws"], env).check()
    assert cloud.is_valid_registry_token(cli.stdout.strip())
    assert cli.stderr == ""


@pytest.mark.parametrize("args", [["status"], ["start"], ["install-service", "--dry-run"]])
def test_menda_credd_says_in_one_line_that_it_runs_on_linux_and_macos(
    hook: Path, home: Path, args: list[str]
) -> None:
    for command in ([MENDA_CREDD, *args], [sys.executable, "-m", "menda_credd", *args]):
        result = run(command, emulated(base_env(home), hook))
        assert result.returncode == 2, result.describe()
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("menda-credd: the daemon runs on Linux and macOS only")
