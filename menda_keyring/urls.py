"""Which keyring service strings are CodeArtifact registries of ours, and which domain they name.

Pure string work with no I/O: this runs for every ``keyring get`` that uv or pip
makes, including the ones for other sites, which must get ``None`` at once.
The authority is split the way WHATWG URL parsers (uv's ``url`` crate, pip's
urllib3) split it, so that a look-alike such as ``https://ours.example@evil.com/``
or ``https://evil.com\\@ours.example/`` is judged by the host a client would
really connect to.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_DOMAIN = r"[a-z][a-z0-9-]{0,48}[a-z0-9]"
_OWNER = r"[0-9]{12}"
_REGION = r"[a-z]{2}(?:-[a-z0-9]+)+"


class _Patterns:
    """Compiled on first use: most ``keyring`` start-ups never ask about CodeArtifact."""

    def __init__(self) -> None:
        self.codeartifact_host = re.compile(
            rf"(?P<domain>{_DOMAIN})-(?P<owner>{_OWNER})\.d\.codeartifact\.(?P<region>{_REGION})"
            r"\.amazonaws\.com",
            re.ASCII,
        )
        self.vpce_host = re.compile(
            rf"vpce-[a-z0-9-]+\.d\.codeartifact\.(?P<region>{_REGION})\.vpce\.amazonaws\.com",
            re.ASCII,
        )
        self.vpce_path = re.compile(
            rf"/[a-z0-9-]+/d/(?P<domain>{_DOMAIN})-(?P<owner>{_OWNER})/[^/?#]+(?:[/?#].*)?",
            re.ASCII | re.DOTALL,
        )
        self.port = re.compile(r"[0-9]{1,5}", re.ASCII)
        self.authority_end = re.compile(r"[/?#\\]")
        self.forbidden = re.compile(r"[\x00-\x20\x7f%]")


_patterns: _Patterns | None = None


def _compiled() -> _Patterns:
    global _patterns
    if _patterns is None:
        _patterns = _Patterns()
    return _patterns


#: The one user name CodeArtifact accepts with an authorization token.
CODEARTIFACT_USERNAME = "aws"


class RegistryTarget(NamedTuple):
    """The CodeArtifact domain a service string names: one token serves all its repositories."""

    domain: str
    owner: str
    region: str


def parse_codeartifact_service(service: object) -> RegistryTarget | None:
    """Return the CodeArtifact domain ``service`` names, or None when it is not ours."""
    if not isinstance(service, str) or not service or len(service) > 2048:
        return None
    if "codeartifact" not in service.lower():
        return None  # every host we answer for says so; the common case costs no regex
    patterns = _compiled()
    scheme, sep, rest = service.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            return None
    else:
        rest = service
    end = patterns.authority_end.search(rest)
    authority, path = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    host_port = authority.rpartition("@")[2]
    if not host_port or patterns.forbidden.search(host_port):
        return None
    host, colon, port = host_port.partition(":")
    if colon and not patterns.port.fullmatch(port):
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    match = patterns.codeartifact_host.fullmatch(host)
    if match:
        return RegistryTarget(match["domain"], match["owner"], match["region"])
    vpce = patterns.vpce_host.fullmatch(host)
    if vpce:
        if path.startswith("\\"):
            return None
        in_path = patterns.vpce_path.fullmatch(path)
        if in_path:
            return RegistryTarget(in_path["domain"], in_path["owner"], vpce["region"])
    return None
