"""The keyring backend: CodeArtifact URLs get a short-lived token, everything else None.

``keyring`` imports this module at every start-up (entry point group
``keyring.backends``), so it imports only the standard library and our own
small stdlib-only modules; the in-process driver loads on first use.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from keyring.backend import KeyringBackend
from keyring.credentials import SimpleCredential

from .daemon_client import (
    DaemonUnavailable,
    DaemonUntrusted,
    request_line,
    round_trip,
    total_timeout,
)
from .errors import DaemonBusy, MendaError, error_from_wire
from .paths import socket_path
from .urls import RegistryTarget, parse_codeartifact_service

log = logging.getLogger(__name__)

CODEARTIFACT_USERNAME = "aws"
_DAEMON_OFF = ("off", "0", "false", "no")
#: Socket paths this process has already warned about: one line each, not one per call.
_warned: set[str] = set()


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
        if parse_codeartifact_service(service) is None:
            raise NotImplementedError("menda-keyring stores nothing for other services")
        log.debug("menda-keyring: nothing stored to delete for a CodeArtifact service")


def fetch_token(service: str, target: RegistryTarget, env: Mapping[str, str]) -> str:
    """The token from the daemon when one answers, else resolved in this process."""
    if env.get("MENDA_CREDD", "").strip().lower() not in _DAEMON_OFF:
        try:
            return _from_daemon(service, env)
        except DaemonUntrusted as exc:
            warn_untrusted(exc)
        except DaemonUnavailable as exc:
            log.debug("menda-credd unavailable (%s); resolving in process", exc.reason)
    from .in_process import InProcessResolver

    return InProcessResolver(env).resolve(target).token


def warn_untrusted(exc: DaemonUntrusted) -> None:
    """One line on stderr (once per socket path and process): a foreign socket was skipped."""
    if exc.path not in _warned:
        _warned.add(exc.path)
        print(f"menda-keyring: {exc.reason}; resolving in process", file=sys.stderr)


def _from_daemon(service: str, env: Mapping[str, str]) -> str:
    reply = round_trip(
        socket_path(env), request_line(service, CODEARTIFACT_USERNAME, env), total_timeout(env)
    )
    if reply.get("ok"):
        password = reply.get("password")
        if isinstance(password, str) and password:
            return password
        raise DaemonUnavailable("the daemon did not recognise the service")
    error = error_from_wire(reply.get("error") if isinstance(reply.get("error"), dict) else {})
    if isinstance(error, DaemonBusy):
        raise DaemonUnavailable(f"the daemon is busy: {error.message}")
    raise error
