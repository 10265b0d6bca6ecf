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
_CODEARTIFACT_HOST = re.compile(
    rf"(?P<domain>{_DOMAIN})-(?P<owner>{_OWNER})\.d\.codeartifact\.(?P<region>{_REGION})"
    r"\.amazonaws\.com",
    re.ASCII,
)
_VPCE_HOST = re.compile(
    rf"vpce-[a-z0-9-]+\.d\.codeartifact\.(?P<region>{_REGION})\.vpce\.amazonaws\.com",
    re.ASCII,
)
_VPCE_PATH = re.compile(
    rf"/[a-z0-9-]+/d/(?P<domain>{_DOMAIN})-(?P<owner>{_OWNER})/[^/?#]+(?:[/?#].*)?",
    re.ASCII | re.DOTALL,
)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_AUTHORITY_END = re.compile(r"[/?#\\]")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f%]")


class RegistryTarget(NamedTuple):
    """The CodeArtifact domain a service string names: one token serves all its repositories."""

    domain: str
    owner: str
    region: str


def parse_codeartifact_service(service: object) -> RegistryTarget | None:
    """Return the CodeArtifact domain ``service`` names, or None when it is not ours."""
    if not isinstance(service, str) or not service or len(service) > 2048:
        return None
    scheme, sep, rest = service.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            return None
    else:
        rest = service
    end = _AUTHORITY_END.search(rest)
    authority, path = (rest, "") if end is None else (rest[: end.start()], rest[end.start() :])
    host_port = authority.rpartition("@")[2]
    if not host_port or _FORBIDDEN.search(host_port):
        return None
    host, colon, port = host_port.partition(":")
    if colon and not _PORT.fullmatch(port):
        return None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    match = _CODEARTIFACT_HOST.fullmatch(host)
    if match:
        return RegistryTarget(match["domain"], match["owner"], match["region"])
    vpce = _VPCE_HOST.fullmatch(host)
    if vpce:
        if path.startswith("\\"):
            return None
        in_path = _VPCE_PATH.fullmatch(path)
        if in_path:
            return RegistryTarget(in_path["domain"], in_path["owner"], vpce["region"])
    return None
