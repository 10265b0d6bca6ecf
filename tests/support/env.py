"""Environments built from scratch for subprocesses, and the files a Menda user has.

Nothing of the developer's shell or CI (proxies, ``MENDA_*``, a real ``~/.menda``, a
running daemon) leaks in, so nothing outside a test can make it pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
PYTHON = sys.executable
KEYRING = str(BIN / "keyring")
MENDA_CREDD = str(BIN / "menda-credd")
IS_ROOT = os.geteuid() == 0

CLIENT_ID = "ci-bot"
#: Sentinels: tests assert these never show up in output, errors or files they should not.
CLIENT_SECRET = "sentinel-client-secret-7c1d"
CA_URL = (
    "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/menda-plugins/simple/"
)


def sentinel(kind: str = "SECRET") -> str:
    """A unique, greppable secret for leak checks."""
    return f"SENTINEL-{kind}-{secrets.token_hex(8)}"


#: Set (to the hook's folder) in a test run under tests/support/windows_emulation.py: the
#: subprocesses it starts must lack fcntl and AF_UNIX too.
WINDOWS_EMULATION = "MENDA_TEST_WINDOWS_EMULATION"
WINDOWS_EMULATION_LOG = "MENDA_TEST_WINDOWS_EMULATION_LOG"


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no MENDA_* or proxies, and a daemon socket nobody listens on."""
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MENDA_CREDD_SOCKET": str(home / "no-daemon.sock"),
    }
    hook = os.environ.get(WINDOWS_EMULATION)
    if hook:
        env.update({WINDOWS_EMULATION: hook, "PYTHONPATH": hook})
        if WINDOWS_EMULATION_LOG in os.environ:
            env[WINDOWS_EMULATION_LOG] = os.environ[WINDOWS_EMULATION_LOG]
    env.update(extra)
    return env


def m2m_env(
    home: Path,
    cloud: Any,
    *,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
    **extra: str,
) -> dict[str, str]:
    """``base_env`` with the machine identity trio of ``client_id`` at ``cloud``."""
    trio = {
        "MENDA_CLIENT_ID": client_id,
        "MENDA_CLIENT_SECRET": secret,
        "MENDA_HOST": cloud.url,
    }
    return base_env(home, **{**trio, **extra})


def without_menda(env: dict[str, str]) -> dict[str, str]:
    """``env`` minus every ``MENDA_*`` variable."""
    return {k: v for k, v in env.items() if not k.startswith("MENDA_")}


@contextlib.contextmanager
def short_tmpdir(prefix: str = "mtd-") -> Iterator[Path]:
    """A fresh 0700 folder with a short path under /tmp (``sun_path`` is small)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


def write_user_token(
    home: Path, profile: str, token: str, expires_at: int, host: str, **members: Any
) -> Path:
    """What ``menda auth login`` leaves in the shared cache for a u2m profile; ``members``
    adds to (or replaces) the entry's, e.g. ``refresh_token`` and ``client_id``."""
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
        **members,
    }
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


def write_user_login(home: Path, profile: str, login: dict[str, Any], host: str) -> Path:
    """A login from the fake's ``issue_user_login``, written as ``menda auth login`` would."""
    members = {k: v for k, v in login.items() if k not in ("access_token", "expires_at")}
    return write_user_token(
        home, profile, login["access_token"], login["expires_at"], host, **members
    )


def read_cache_entries(home: Path) -> dict[str, Any]:
    """Every entry of the shared token cache under ``home``."""
    path = home / ".menda" / "tokens" / "cache" / ".token"
    entries: dict[str, Any] = json.loads(path.read_text())["tokens"]
    return entries
