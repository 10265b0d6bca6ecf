"""Windows as far as our code can tell on Linux: no ``fcntl``, no ``socket.AF_UNIX``.

``install(folder)`` writes a ``sitecustomize.py`` into ``folder``; a Python started with
that folder first on ``PYTHONPATH`` (and every process it starts, which inherits the
variable) cannot import ``fcntl`` and has no ``socket.AF_UNIX``, as CPython on Windows.
What this does not stand in for: NTFS semantics (``os.replace`` over an open file, ACLs),
``msvcrt`` locks, Windows paths. Those are only reasoned about (README, "Platforms").
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.env import WINDOWS_EMULATION
from tests.support.env import WINDOWS_EMULATION_LOG as LOG

SITECUSTOMIZE = '''\
"""menda-keyring tests: make this interpreter lack what CPython lacks on Windows."""
import os
import socket
import sys

_log = os.environ.get("{log}")
if _log:  # which processes ran emulated, for the test to check
    with open(_log, "a") as _file:
        _file.write(" ".join(sys.orig_argv) + "\\n")


class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl' (Windows emulation)", name=name)
        return None


sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())
if hasattr(socket, "AF_UNIX"):
    del socket.AF_UNIX
'''

#: For tests that need a Unix socket themselves (a fake daemon), not just our code.
needs_unix_sockets = pytest.mark.skipif(
    not hasattr(socket, "AF_UNIX"), reason="needs Unix sockets, which Windows has not"
)


def install(folder: Path) -> Path:
    """Write the hook into ``folder``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE.replace("{log}", LOG))
    return folder


def emulated(env: dict[str, str], folder: Path, log: Path | None = None) -> dict[str, str]:
    """``env`` with the hook in ``folder`` first on ``PYTHONPATH``, passed on by ``base_env``.

    ``log``: a file that every emulated process appends its command line to.
    """
    paths = [str(folder), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    extra = {LOG: str(log)} if log is not None else {}
    return {**env, "PYTHONPATH": os.pathsep.join(paths), WINDOWS_EMULATION: str(folder), **extra}
