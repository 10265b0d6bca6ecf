"""The shim's one decision: the daemon's answer when one comes, else resolution in process.

Loaded on the first CodeArtifact URL only (``backend`` stays cheap for every other
site). A daemon that is absent, wedged, of another protocol version, or that
complains about our request (``bad_request``, ``unsupported_version``, ``daemon_busy``)
means in-process resolution at once, with the reason at debug level: the user
sees a token, never an error line about the daemon. The one exception is a socket
that is not ours (``DaemonUntrusted``): nothing is sent, and one stderr line says so.
Where the daemon cannot exist (Windows: no Unix sockets) it is not asked at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping

from .daemon_client import DaemonUnavailable, DaemonUntrusted, round_trip, total_timeout
from .daemon_protocol import ErrorReply, NotOurs, TokenReply, get_request
from .osfeatures import unix_sockets_missing
from .paths import socket_path
from .urls import CODEARTIFACT_USERNAME, RegistryTarget

log = logging.getLogger("menda_keyring.backend")

_DAEMON_OFF = ("off", "0", "false", "no")
#: Socket paths this process has already warned about: one line each, not one per call.
_warned: set[str] = set()


def fetch_token(service: str, target: RegistryTarget, env: Mapping[str, str]) -> str:
    """The token from the daemon when one answers, else resolved in this process."""
    unsupported = unix_sockets_missing()
    if unsupported is not None:
        log.debug("menda-credd cannot be reached here (%s); resolving in process", unsupported)
    elif env.get("MENDA_CREDD", "").strip().lower() not in _DAEMON_OFF:
        try:
            return from_daemon(service, env)
        except DaemonUntrusted as exc:
            warn_untrusted(exc)
        except DaemonUnavailable as exc:
            log.debug("menda-credd unavailable (%s); resolving in process", exc.reason)
    from .in_process import PROCESS_MEMORY, InProcessResolver

    return InProcessResolver(env, memory=PROCESS_MEMORY).resolve(target).token


def forget_token(target: RegistryTarget, env: Mapping[str, str]) -> bool:
    """The caller says a registry refused our token: this process no longer serves it."""
    from .in_process import PROCESS_MEMORY, InProcessResolver

    return InProcessResolver(env, memory=PROCESS_MEMORY).forget(target)


def warn_untrusted(exc: DaemonUntrusted) -> None:
    """One line on stderr (once per socket path and process): a foreign socket was skipped."""
    if exc.path not in _warned:
        _warned.add(exc.path)
        print(f"menda-keyring: {exc.reason}; resolving in process", file=sys.stderr)


def from_daemon(service: str, env: Mapping[str, str]) -> str:
    """The daemon's token; raises the typed error it reports, or DaemonUnavailable."""
    request = get_request(service, CODEARTIFACT_USERNAME, env)
    reply = round_trip(socket_path(env), request, total_timeout(env))
    if isinstance(reply, TokenReply):
        return reply.password
    if isinstance(reply, ErrorReply):
        raise reply.error  # DaemonProtocolError never gets here: round_trip made it unavailable
    if isinstance(reply, NotOurs):
        raise DaemonUnavailable("the daemon did not recognise the service")
    raise DaemonUnavailable("the daemon's answer is not a token")
