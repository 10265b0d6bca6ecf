"""Helpers for driving the real ``uv``, ``pip`` and ``keyring`` binaries end to end.

Every subprocess gets an environment built from scratch (as ``env -i`` would), so nothing
from the developer's shell or CI (proxies, ``PIP_*``/``UV_*`` settings, a real
``~/.menda/mendacfg``, a running ``menda-credd``) can make a test pass or fail.

Debugging aid: :func:`logging_keyring_bin` puts a shim in place of the ``keyring`` link that
appends each argv to a file, to see exactly what an installer asked (the tests use the real
link).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

BIN = Path(sys.executable).parent
UV = BIN / "uv"
KEYRING = BIN / "keyring"
CREDD = BIN / "menda-credd"
#: The project venv's pip (current, with ``--keyring-provider`` and ``--python``).
PIP = [sys.executable, "-m", "pip"]
TIMEOUT = 120.0

IDENTITY_VARS = ("MENDA_CLIENT_ID", "MENDA_CLIENT_SECRET", "MENDA_HOST")


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


@contextlib.contextmanager
def short_run_dir() -> Iterable[Path]:
    """A 0700 folder with a short path under /tmp (pytest's tmp paths can overflow sun_path)."""
    path = Path(tempfile.mkdtemp(prefix="mcrd-", dir="/tmp"))
    path.chmod(0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def keyring_only_bin(folder: Path, target: Path = KEYRING) -> Path:
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


def logging_keyring_bin(folder: Path, log: Path, target: Path = KEYRING) -> Path:
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


def run(
    cmd: list[str | Path],
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A failure message: command, exit status and both streams."""
    args = " ".join(shlex.quote(str(a)) for a in result.args)
    return (
        f"$ {args}\nexit {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, describe(result)
    return result


def make_venv(path: Path, env: dict[str, str]) -> Path:
    """A fresh venv of this interpreter (no pip in it); returns its python."""
    check(run([UV, "venv", "--quiet", "--python", sys.executable, path], env))
    return path / "bin" / "python"


def import_greeting(
    python: Path | str, *, pythonpath: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
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
    )


def url_password(url: str) -> str | None:
    return urlsplit(url).password


def wait_for_socket(path: Path, deadline: float, proc: subprocess.Popen[Any] | None) -> bool:
    """Poll until a unix socket at ``path`` accepts a connection (or ``proc`` exits)."""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(str(path))
                return True
            except OSError:
                pass
        time.sleep(0.05)
    return False


def credd_available() -> str | None:
    """None when ``menda-credd start --foreground`` can be used, else why not."""
    if importlib.util.find_spec("menda_credd.cli") is None:
        return "menda_credd.cli is not there yet"
    if not CREDD.exists():
        return f"{CREDD} is not installed (reinstall the package to get the entry point)"
    return None


class CredDaemon:
    """``menda-credd start --foreground`` in the background, for one test."""

    START_TIMEOUT = 20.0

    def __init__(self, env: dict[str, str], socket_path: Path, log: Path) -> None:
        self.env = env
        self.socket_path = socket_path
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> CredDaemon:
        self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(CREDD), "start", "--foreground", "--log-level", "debug"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.START_TIMEOUT
        if not wait_for_socket(self.socket_path, deadline, self.proc):
            self.stop()
            raise AssertionError(f"menda-credd did not come up:\n{self.log_text()}")
        return self

    def status(self) -> dict[str, Any]:
        """``menda-credd status --json`` (asked through the CLI, as a user would)."""
        result = check(run([CREDD, "status", "--json"], self.env, timeout=30))
        return json.loads(result.stdout)

    def counters(self) -> dict[str, int]:
        return dict(self.status().get("counters", {}))

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s; returns the exit status."""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def __enter__(self) -> CredDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
