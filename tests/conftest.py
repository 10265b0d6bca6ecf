"""Shared fixtures: a real fake menda-cloud on loopback and a private temporary home."""

from __future__ import annotations

import json
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


def write_profile(home: Path, text: str | bytes) -> Path:
    """Write ``~/.menda/mendacfg`` as ``menda auth configure`` would."""
    folder = home / ".menda"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "mendacfg"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def write_user_token(home: Path, profile: str, token: str, expires_at: int, host: str) -> Path:
    """What ``menda auth login`` leaves in the shared cache for a u2m profile."""
    folder = home / ".menda" / "tokens" / "cache"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / ".token"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {"version": 1, "tokens": {}}
    data["tokens"][f"u2m:{profile}"] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": expires_at,
        "host": host,
        "auth_type": "u2m",
    }
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path
