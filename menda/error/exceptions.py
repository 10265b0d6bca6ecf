"""The typed errors of menda-keyring under the shared ``menda`` namespace.

The package description promises ``menda.error.exceptions``; these are the very
classes of :mod:`menda_keyring.errors` (not copies), so ``except`` clauses written
against either name catch the same errors. ``menda`` and ``menda.error`` are PEP 420
namespace packages (no ``__init__.py`` of ours) so that other Menda packages can
add their own modules beside this one.
"""

from __future__ import annotations

from menda_keyring.errors import (
    AccessTokenRejected,
    BadRequestError,
    ConfigError,
    ConfigFileNotFoundError,
    DaemonBusy,
    DaemonProtocolError,
    IndexCredentialsError,
    InvalidHostError,
    InvalidLoginEntryError,
    MendaCloudAPIError,
    MendaError,
    MissingClientCredentialsError,
    NoCachedLoginError,
    NotCodeArtifactError,
    ProfileMissingHostError,
    ProfileNotFoundError,
    ResolutionTimeoutError,
    TransientError,
    UnsupportedVersionError,
)

__all__ = [
    "AccessTokenRejected",
    "BadRequestError",
    "ConfigError",
    "ConfigFileNotFoundError",
    "DaemonBusy",
    "DaemonProtocolError",
    "IndexCredentialsError",
    "InvalidHostError",
    "InvalidLoginEntryError",
    "MendaCloudAPIError",
    "MendaError",
    "MissingClientCredentialsError",
    "NoCachedLoginError",
    "NotCodeArtifactError",
    "ProfileMissingHostError",
    "ProfileNotFoundError",
    "ResolutionTimeoutError",
    "TransientError",
    "UnsupportedVersionError",
]
