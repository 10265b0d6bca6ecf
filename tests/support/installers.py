"""Helpers for driving the real ``uv`` and ``pip`` end to end through our keyring backend.

Every subprocess gets an environment built from scratch (as ``env -i`` would), so nothing
from the developer's shell or CI (proxies, ``PIP_*``/``UV_*`` settings, a real
``~/.menda/mendacfg``, a running ``menda-credd``) can make a test pass or fail.

Debugging aid: :func:`logging_keyring_bin` puts a shim in place of the ``keyring`` link that
appends each argv to a file, to see exactly what an installer asked (the tests use the real
link).
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.env import BIN, KEYRING
from tests.support.procs import Run, run

UV = BIN / "uv"
#: The project venv's pip (current, with ``--keyring-provider`` and ``--python``).
PIP = [sys.executable, "-m", "pip"]
TIMEOUT = 120.0

IDENTITY_VARS = ("MENDA_CLIENT_ID", "MENDA_CLIENT_SECRET", "MENDA_HOST")

#: The ``[project]`` table of the demo project every e2e lock-and-install test declares.
DEMO_PROJECT = """\
[project]
name = "demo-app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["menda-hello"]
"""


@dataclass
class Sandbox:
    """Private folders for one test: a home, XDG dirs, caches and a 0700 socket folder."""

    root: Path
    home: Path
    config: Path
    config_dirs: Path
    data: Path
    cache: Path
    bin: Path
    run: Path

    @classmethod
    def create(cls, root: Path, run: Path) -> Sandbox:
        """Make the folders under ``root``; ``run`` (short, for ``sun_path``) must exist, 0700."""
        home = root / "home"
        box = cls(
            root=root,
            home=home,
            config=home / ".config",
            config_dirs=root / "etc-xdg",
            data=home / ".local" / "share",
            cache=root / "cache",
            bin=root / "bin",
            run=run,
        )
        for folder in (box.home, box.config, box.config_dirs, box.data, box.cache):
            folder.mkdir(parents=True, exist_ok=True)
        keyring_only_bin(box.bin)
        return box

    @property
    def socket(self) -> Path:
        """``MENDA_CREDD_SOCKET``: where a daemon listens (when one runs)."""
        return self.run / "credd.sock"


def keyring_only_bin(folder: Path, target: Path = Path(KEYRING)) -> Path:
    """A folder holding only a ``keyring`` symlink, to put first on ``PATH``.

    pip's ``subprocess`` provider looks ``keyring`` up on ``PATH`` only (it skips one in the
    venv pip runs from), and uv does the same; nothing else of the project venv leaks in.
    """
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "keyring"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    return folder


def logging_keyring_bin(folder: Path, log: Path, target: Path = Path(KEYRING)) -> Path:
    """Debug only: a ``keyring`` shim that appends its argv to ``log``, then execs ``target``."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "keyring"
    if shim.is_symlink() or shim.exists():
        shim.unlink()
    shim.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f'exec {shlex.quote(str(target))} "$@"\n'
    )
    shim.chmod(0o755)
    return folder


def installer_env(
    box: Sandbox,
    *,
    proxy_url: str,
    ca_pem: Path,
    identity: dict[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    """The whole environment for uv/pip (inherited by the keyring they spawn).

    ``HTTP_PROXY`` as well as ``HTTPS_PROXY`` points at the fake proxy, which only does
    CONNECT: plain-HTTP menda-cloud requests on loopback must bypass it, and a request that
    did not would show up in the proxy's ``rejected`` counter and fail.
    """
    env = {
        "HOME": str(box.home),
        "PATH": f"{box.bin}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "LANG": "C.UTF-8",
        "TMPDIR": str(box.root),
        "XDG_CONFIG_HOME": str(box.config),
        "XDG_CONFIG_DIRS": str(box.config_dirs),
        "XDG_DATA_HOME": str(box.data),
        "XDG_CACHE_HOME": str(box.cache),
        "UV_CACHE_DIR": str(box.cache / "uv"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "SSL_CERT_FILE": str(ca_pem),
        "MENDA_CREDD_SOCKET": str(box.socket),
    }
    env.update(identity or {})
    env.update(extra)
    return env


def without_identity(env: dict[str, str]) -> dict[str, str]:
    """``env`` minus the MENDA_* identity trio."""
    return {k: v for k, v in env.items() if k not in IDENTITY_VARS}


def make_venv(path: Path, env: dict[str, str]) -> Path:
    """A fresh venv of this interpreter (no pip in it); returns its python."""
    run([UV, "venv", "--quiet", "--python", sys.executable, path], env, timeout=TIMEOUT).check()
    return path / "bin" / "python"


def uv_pip_install(
    python: Path, index_url: str, package: str, env: dict[str, str], cwd: Path
) -> Run:
    """``uv pip install --keyring-provider subprocess`` of ``package`` into ``python``."""
    command = [UV, "pip", "install", "--python", python, "--keyring-provider", "subprocess"]
    command += ["--index-url", index_url, package]
    return run(command, {**env, "UV_NO_CONFIG": "1"}, cwd=cwd, timeout=TIMEOUT)


def import_greeting(
    python: Path | str, *, pythonpath: Path | None = None, env: dict[str, str] | None = None
) -> Run:
    """``import menda_hello`` in ``python``; prints its GREETING, then its file."""
    child = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1", **(env or {})}
    if pythonpath is not None:
        child["PYTHONPATH"] = str(pythonpath)
    return run(
        [
            python,
            "-c",
            "import menda_hello; print(menda_hello.GREETING); print(menda_hello.__file__)",
        ],
        child,
        timeout=TIMEOUT,
    )


def url_password(url: str) -> str | None:
    return urlsplit(url).password
