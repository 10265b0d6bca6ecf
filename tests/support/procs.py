"""The one subprocess runner: the real ``keyring`` and ``menda-credd`` CLIs, uv, pip."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.env import CA_URL, KEYRING, MENDA_CREDD


@dataclass
class Run:
    """One finished subprocess, with its wall time."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def token(self) -> str:
        """stdout of a run that must have succeeded."""
        assert self.returncode == 0, self.describe()
        return self.stdout.strip()

    def check(self) -> Run:
        """This run, asserted to have exited 0."""
        assert self.returncode == 0, self.describe()
        return self

    def describe(self) -> str:
        """A failure message: command, exit status, time and both streams."""
        return (
            f"$ {shlex.join(self.args)}\nexit {self.returncode} after {self.elapsed:.2f} s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def _umask_preexec(umask: int | None) -> Callable[[], None] | None:
    if umask is None:
        return None

    def set_umask() -> None:
        os.umask(umask)

    return set_umask


def run(
    command: Sequence[str | Path],
    env: dict[str, str],
    *,
    timeout: float = 60.0,
    cwd: Path | None = None,
    umask: int | None = None,
    stdin: str | None = None,
) -> Run:
    """Run ``command`` to its end, ``stdin`` its input (none by default); ``env`` is the
    whole environment."""
    args = [str(part) for part in command]
    start = time.monotonic()
    result = subprocess.run(
        args,
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        preexec_fn=_umask_preexec(umask),  # umask only, no threads touched
    )
    return Run(args, result.returncode, result.stdout, result.stderr, time.monotonic() - start)


def keyring_get(
    env: dict[str, str],
    service: str = CA_URL,
    username: str = "aws",
    timeout: float = 60.0,
    umask: int | None = None,
) -> Run:
    """The real ``keyring get SERVICE USERNAME``."""
    return run([KEYRING, "get", service, username], env, timeout=timeout, umask=umask)


def keyring_herd(
    env: dict[str, str], count: int, service: str = CA_URL, timeout: float = 120.0
) -> list[Run]:
    """``count`` real ``keyring get SERVICE aws`` processes started at once, all awaited."""
    args = [KEYRING, "get", service, "aws"]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        for _ in range(count)
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        runs.append(Run(args, proc.returncode, out, err, time.monotonic() - start))
    return runs


def credd(*args: str, env: dict[str, str], timeout: float = 60.0) -> Run:
    """The real ``menda-credd`` console script."""
    return run([MENDA_CREDD, *args], env, timeout=timeout)
