"""Poetry, PDM and twine from PyPI, each in a venv of its own, with and without menda-keyring.

Pinned by ``constraints/tools.txt`` and kept in ``.tools/`` (gitignored) between runs, so
that only the first run on a machine, or one after a pin or a source change, pays for the
install. "with menda-keyring" is what ``poetry self add menda-keyring`` (or ``uv tool
install poetry --with menda-keyring``) leaves: the tool's own environment holding keyring
and our backend. "bare" is the same tool without it: the control that must get a 401.

``python -m tests.support.tools`` makes them all (``.ci/run`` does, before the tests).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.venvs import ROOT, ensure_venv

TOOLS_DIR = ROOT / ".tools"
CONSTRAINTS = ROOT / "constraints" / "tools.txt"


@dataclass(frozen=True)
class Tool:
    """A program and what its environment needs besides menda-keyring."""

    name: str
    requirements: tuple[str, ...]

    def venv(self, with_menda: bool) -> Path:
        """The venv, made or reused; ``with_menda``: menda-keyring from this checkout in it."""
        folder = TOOLS_DIR / f"{self.name}-{'menda' if with_menda else 'bare'}"
        return ensure_venv(
            folder,
            self.requirements,
            constraints=CONSTRAINTS,
            with_checkout=with_menda,
            log=lambda message: print(f"[tools] {message}", file=sys.stderr, flush=True),
        )

    def bin(self, with_menda: bool, program: str | None = None) -> Path:
        """A program of the venv (the tool itself by default)."""
        return self.venv(with_menda) / "bin" / (program or self.name)


POETRY = Tool("poetry", ("poetry",))
#: PDM does not depend on keyring: its users add it (``pdm self add keyring``).
PDM = Tool("pdm", ("pdm", "keyring"))
TWINE = Tool("twine", ("twine",))
ALL = (POETRY, PDM, TWINE)


def main() -> int:
    started = time.monotonic()
    for tool in ALL:
        for with_menda in (True, False):
            print(tool.venv(with_menda))
    print(f"[tools] ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
