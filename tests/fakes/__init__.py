"""Loopback fakes of menda-cloud, a CodeArtifact PyPI index and an HTTPS proxy.

Stdlib plus ``trustme`` only, so real uv/pip/keyring binaries can be driven end to end.
Names are imported lazily so ``python -m tests.fakes.world`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FakeCloudControl": "tests.fakes.menda_cloud",
    "FakeMendaCloud": "tests.fakes.menda_cloud",
    "FakeCodeArtifactIndex": "tests.fakes.codeartifact_index",
    "FakeHttpsProxy": "tests.fakes.https_proxy",
    "FakeWorld": "tests.fakes.world",
    "build_wheel": "tests.fakes.wheels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
