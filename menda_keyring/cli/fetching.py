"""Tokens for the command line, by exactly the backend's path: the daemon, else in process.

``token`` and ``exec`` both go through :func:`menda_keyring.shim.fetch_token`, so they
answer what ``keyring get URL aws`` would, with the same typed errors.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import MendaError
from ..shim import fetch_token
from ..urls import RegistryTarget


def fetch_all(
    targets: Mapping[RegistryTarget, str], env: Mapping[str, str]
) -> tuple[dict[RegistryTarget, str], dict[RegistryTarget, MendaError]]:
    """One fetch per domain (``targets`` maps each to a service URL): tokens and failures."""
    tokens: dict[RegistryTarget, str] = {}
    failures: dict[RegistryTarget, MendaError] = {}
    for target, service in targets.items():
        try:
            tokens[target] = fetch_token(service, target, env)
        except MendaError as exc:
            failures[target] = exc
    return tokens, failures


def error_line(exc: MendaError) -> str:
    """A typed error as one stderr line, in the backend's form."""
    return f"menda-keyring: {type(exc).__name__}: {exc}"
