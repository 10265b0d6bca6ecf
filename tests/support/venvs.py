"""Virtual environments from the package registries, made with the real uv and kept between runs.

The end-to-end tests of Poetry, PDM and twine and the benchmarks each need programs in
environments of their own (not the project venv: Poetry and PDM bring big dependency
trees and their own keyring). :func:`ensure_venv` makes one with ``uv venv`` and ``uv pip
install``, and reuses it while what it was made from (the requirements, their pins, the
interpreter and, with ``with_checkout``, this checkout's sources) is unchanged. The
checkout goes in as a wheel built from a copy, as a user's ``poetry self add`` or ``uv
tool install --with`` installs it, never as an editable install.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from menda_keyring.fileutil import ExclusiveLock

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
UV = PYTHON.parent / "uv"
#: Stamp file in each venv: what it was made from.
STAMP = ".menda-venv"
#: A venv is made at most once at a time by all the test runs of one checkout.
MAKE_TIMEOUT = 900.0


def source_hash() -> str:
    """Changes whenever the installable package of this checkout does."""
    digest = hashlib.sha256()
    sources = [ROOT / "pyproject.toml", *ROOT.glob("menda*/**/*.py")]
    for path in sorted(sources):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _uv(*args: str | Path) -> None:
    subprocess.run([str(UV), *map(str, args)], check=True, stdin=subprocess.DEVNULL)


def checkout_wheel(cache: Path) -> Path:
    """menda-keyring built from this checkout as a wheel, once per :func:`source_hash`."""
    folder = cache / f"wheel-{source_hash()}"
    wheels = sorted(folder.glob("menda_keyring-*.whl"))
    if wheels:
        return wheels[-1]
    for old in cache.glob("wheel-*"):
        shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="menda-src-") as src:
        # Built from a copy: a build in the checkout would leave build/ and egg-info behind.
        shutil.copytree(
            ROOT,
            src,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".venv*", ".git", ".tools", "benchmarks", "tests", "*.egg-info", "__pycache__"
            ),
        )
        _uv("build", "--quiet", "--wheel", "--out-dir", folder, src)
    return sorted(folder.glob("menda_keyring-*.whl"))[-1]


def ensure_venv(
    venv: Path,
    requirements: Sequence[str],
    *,
    constraints: Path | None = None,
    with_checkout: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """``venv`` holding ``requirements`` (and this checkout, if asked); returns it.

    Reused as it is while its stamp matches; else made again from scratch.
    """
    want = [f"python {PYTHON} {sys.version.split()[0]}", *requirements]
    if constraints is not None:
        want.append(constraints.read_text())
    if with_checkout:
        want.append(f"menda-keyring {source_hash()}")
    stamp_text = "\n".join(want)
    stamp = venv / STAMP
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = ExclusiveLock(venv.parent / ".lock")
    if not lock.acquire(MAKE_TIMEOUT):
        raise TimeoutError(f"another run has been making a venv in {venv.parent} for too long")
    try:
        if stamp.is_file() and stamp.read_text() == stamp_text:
            return venv
        started = time.monotonic()
        log(f"making {venv} ({', '.join(requirements)}); kept for later runs")
        shutil.rmtree(venv, ignore_errors=True)
        _uv("venv", "--quiet", "--python", PYTHON, venv)
        packages: list[str | Path] = list(requirements)
        if with_checkout:
            packages.append(checkout_wheel(venv.parent))
        pins: list[str | Path] = ["--constraint", constraints] if constraints is not None else []
        _uv("pip", "install", "--quiet", "--python", venv / "bin" / "python", *pins, *packages)
        stamp.write_text(stamp_text)
        log(f"made {venv} in {time.monotonic() - started:.1f} s")
        return venv
    finally:
        lock.release()
