"""Shared fixtures, and the suite marker of every test.

Each test belongs to exactly one suite (``unit``, ``cli``, ``daemon``, ``e2e``,
``hardening``, ``bench``; see pyproject). The suite comes from the test file, by the rules
in ``SUITES`` below or by the file's own ``pytestmark``; a test with no suite, or with two,
stops the run at collection, so that ``-m`` selections (as ``.ci/run`` makes them) never
silently miss a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CLIENT_ID, CLIENT_SECRET, short_tmpdir

SUITE_NAMES = ("unit", "cli", "daemon", "e2e", "hardening", "bench")

#: File name -> suite; a name ending in ``*`` is a prefix. The first match wins.
SUITES: dict[str, str] = {
    "test_urls.py": "unit",
    "test_identity.py": "unit",
    "test_cloud_protocol.py": "unit",
    "test_token_cache.py": "unit",
    "test_in_process.py": "unit",
    "test_credd_refresh.py": "unit",
    "test_credd_broker.py": "unit",
    "test_credd_server.py": "unit",
    "test_redaction.py": "unit",
    "test_keyring_cli.py": "cli",
    "test_tls.py": "cli",
    "test_cache_contention.py": "cli",
    "test_credd_*": "daemon",
    "test_daemon_*": "daemon",
    "test_e2e_*": "e2e",
    "test_fakes.py": "e2e",
    "test_hardening_*": "hardening",
    "test_security_*": "hardening",
    "test_benchmarks.py": "bench",
}


def suite_of_file(name: str) -> str | None:
    """The suite ``SUITES`` gives the test file ``name``, if any."""
    for pattern, suite in SUITES.items():
        if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
            return suite
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        own = {m.name for m in item.iter_markers() if m.name in SUITE_NAMES}
        if not own:
            suite = suite_of_file(item.path.name)
            if suite is not None:
                item.add_marker(getattr(pytest.mark, suite))
                own = {suite}
        if len(own) != 1:
            problems.append(f"{item.nodeid}: suites {sorted(own) or 'none'}")
    if problems:
        raise pytest.UsageError(
            "every test needs exactly one suite marker (tests/conftest.py SUITES, or a "
            "module-level pytestmark):\n  " + "\n  ".join(problems)
        )


@pytest.fixture
def cloud() -> Iterator[FakeMendaCloud]:
    """A real fake menda-cloud on loopback that knows ``CLIENT_ID``."""
    with FakeMendaCloud() as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty private HOME."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A fresh 0700 folder with a path short enough for sun_path (the daemon harness puts
    its log next to it, inside the same temporary root)."""
    with short_tmpdir("mcd-") as root:
        path = root / "s"
        path.mkdir(mode=0o700)
        yield path
