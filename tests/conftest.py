"""Shared fixtures: a real fake menda-cloud on loopback and a private temporary home."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud

CLIENT_ID = "ci-bot"
#: Sentinels: tests assert these never show up in output, errors or files they should not.
CLIENT_SECRET = "sentinel-client-secret-7c1d"
CA_URL = "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/menda-plugins/simple/"
BIN = Path(sys.executable).parent


@pytest.fixture
def cloud() -> Iterator[FakeMendaCloud]:
    with FakeMendaCloud() as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a subprocess: no MENDA_* or proxies from the outside world."""
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MENDA_CREDD_SOCKET": str(home / "no-daemon.sock"),
    }
    env.update(extra)
    return env


def m2m_env(home: Path, cloud: FakeMendaCloud, **extra: str) -> dict[str, str]:
    trio = {
        "MENDA_CLIENT_ID": CLIENT_ID,
        "MENDA_CLIENT_SECRET": CLIENT_SECRET,
        "MENDA_HOST": cloud.url,
    }
    return base_env(home, **{**trio, **extra})
