"""The keyring backend: CodeArtifact URLs get a short-lived token, everything else None.

``keyring`` imports this module at every start-up (entry point group
``keyring.backends``), for every site, so it imports only what deciding "is this
URL ours" needs: keyring's own classes and :mod:`menda_keyring.urls`. The daemon
client, the in-process resolver and the errors load on the first CodeArtifact URL.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from keyring.backend import KeyringBackend
from keyring.credentials import SimpleCredential

from .urls import CODEARTIFACT_USERNAME, RegistryTarget, parse_codeartifact_service

log = logging.getLogger(__name__)


class MendaCodeArtifactKeyring(KeyringBackend):
    """Answers for AWS CodeArtifact registries only, with tokens from menda-cloud."""

    #: Above the OS keychains, below keyring's ChainerBackend (10), which asks us first.
    priority = 9.9

    def get_password(self, service: str, username: str | None) -> str | None:
        credential = self.get_credential(service, username)
        return credential.password if credential is not None else None

    def get_credential(self, service: str, username: str | None) -> SimpleCredential | None:
        if username not in (None, CODEARTIFACT_USERNAME):
            return None  # CodeArtifact accepts no other user name.
        target = parse_codeartifact_service(service)
        if target is None:
            return None
        from .errors import MendaError

        try:
            token = fetch_token(service, target, os.environ)
        except MendaError as exc:
            if "keyring.cli" not in sys.modules:
                raise  # Library callers (pip's import provider) get the typed error.
            # Under the keyring CLI (how uv and pip call us) stderr is all the user sees:
            # one clear line instead of a traceback, and exit status 1 as for "no password".
            print(f"menda-keyring: {type(exc).__name__}: {exc}", file=sys.stderr)
            return None
        return SimpleCredential(CODEARTIFACT_USERNAME, token)

    def set_password(self, service: str, username: str, password: str) -> None:
        if parse_codeartifact_service(service) is None:
            # Lets keyring's chainer pass the call on to the user's real keychain.
            raise NotImplementedError("menda-keyring stores nothing for other services")
        log.debug("menda-keyring: ignoring set_password for a CodeArtifact service")

    def delete_password(self, service: str, username: str) -> None:
        target = parse_codeartifact_service(service)
        if target is None:
            raise NotImplementedError("menda-keyring stores nothing for other services")
        # Nothing is stored; a caller that found our token refused (a 401 from the
        # registry) says so this way, and this process stops serving it from memory.
        from .errors import MendaError
        from .shim import forget_token

        try:
            forgotten = forget_token(target, os.environ)
        except MendaError:
            forgotten = False  # no identity: nothing was remembered for it
        log.debug("menda-keyring: delete_password forgot a remembered token: %s", forgotten)


def fetch_token(service: str, target: RegistryTarget, env: Mapping[str, str]) -> str:
    """The token from the daemon when one answers, else resolved in this process."""
    from .shim import fetch_token as fetch

    return fetch(service, target, env)
