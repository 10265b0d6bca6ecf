"""Which Menda identity answers for this caller: the environment trio, or a profile.

Plain functions over an environment mapping and a home folder, so that the
in-process resolver and the daemon (which gets the client's environment over its
socket) make the same decision, and tests can call them directly.
"""

from __future__ import annotations

import configparser
import hashlib
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from .errors import (
    ConfigError,
    ConfigFileNotFoundError,
    InvalidHostError,
    MissingClientCredentialsError,
    ProfileMissingHostError,
    ProfileNotFoundError,
    shown,
)
from .fileutil import read_regular_file
from .paths import config_path

ENV_CLIENT_ID = "MENDA_CLIENT_ID"
ENV_CLIENT_SECRET = "MENDA_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
ENV_HOST = "MENDA_HOST"
ENV_PROFILE = "MENDA_PROFILE_ID"
DEFAULT_PROFILE = "default"
#: Longer host URLs are refused: they only make unreadable error messages.
MAX_HOST_URL = 512


@dataclass(frozen=True)
class Identity:
    """A resolved Menda identity. ``label`` is safe to show; the secret never is."""

    source: str  # "env" or "profile"
    auth_type: str  # "m2m" or "u2m"
    host: str  # normalised base URL, no trailing slash
    cache_key: str  # key in the shared token cache
    profile: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.source == "env":
            return f"env client {self.client_id} ({self.auth_type}) at {self.host}"
        return f"profile {shown(self.profile or '')} ({self.auth_type}) at {self.host}"

    @cached_property
    def fingerprint(self) -> str:
        """Distinguishes identities in memory: a changed secret is another identity."""
        digest = hashlib.sha256()
        for part in (
            self.source,
            self.auth_type,
            self.host,
            self.cache_key,
            self.client_id or "",
            self.client_secret or "",
        ):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def is_loopback_host(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalise_host(raw: str, where: str) -> str:
    """Check a menda-cloud base URL per the contract and return it without a trailing slash.

    ``where`` names the file and profile (or variable) for the error message.
    """
    value = raw.strip()
    if not value:
        raise InvalidHostError(f"{where}: host is empty; set it to https://<your menda-cloud>")
    if len(value) > MAX_HOST_URL:
        raise InvalidHostError(f"{where}: host is longer than {MAX_HOST_URL} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        raise InvalidHostError(f"{where}: host contains spaces or control characters")
    try:
        parts = urlsplit(value)
        hostname = parts.hostname
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise InvalidHostError(f"{where}: host is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not hostname:
        raise InvalidHostError(
            f"{where}: host must be an https:// URL such as https://api.example.menda.cloud"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidHostError(f"{where}: host must not contain user information")
    if parts.query or parts.fragment:
        raise InvalidHostError(f"{where}: host must not contain a query or fragment")
    if not _is_ip(hostname):
        try:
            if len(hostname.encode("idna")) > 253:
                raise UnicodeError("host name too long")
        except UnicodeError:
            raise InvalidHostError(
                f"{where}: host {shown(hostname)!r} is not a valid host name"
            ) from None
    if parts.scheme == "http" and not is_loopback_host(hostname):
        raise InvalidHostError(
            f"{where}: host uses http:// for {shown(hostname)}; only https:// is allowed "
            "(http:// only for loopback addresses)"
        )
    return value.rstrip("/")


def resolve_identity(env: Mapping[str, str], home: Path) -> Identity:
    """Apply the documented resolution order: full env trio first, else the active profile."""
    client_id = env.get(ENV_CLIENT_ID, "")
    client_secret = env.get(ENV_CLIENT_SECRET, "")
    env_host = env.get(ENV_HOST, "")
    if client_id and client_secret and env_host:
        host = normalise_host(env_host, ENV_HOST)
        return Identity(
            source="env",
            auth_type="m2m",
            host=host,
            cache_key=f"m2m:client:{client_id}",
            client_id=client_id,
            client_secret=client_secret,
        )
    profile = env.get(ENV_PROFILE) or DEFAULT_PROFILE
    path = config_path(home)
    return identity_from_profile(read_config(path), profile, path)


def read_config(path: Path) -> configparser.ConfigParser:
    """Parse ``mendacfg``; errors name file and line, never its text (it may hold a secret)."""
    try:
        text = read_regular_file(path, "Menda config file").decode("utf-8")
    except FileNotFoundError:
        raise ConfigFileNotFoundError(
            f"Menda config file not found: {path}. Run menda auth configure to create it, "
            f"or set {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} and {ENV_HOST}."
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"Menda config file {path} is a directory, not a file") from None
    except PermissionError:
        raise ConfigError(f"Menda config file {path} cannot be read: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Menda config file {path} is not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"Menda config file {path} cannot be read: {exc.strerror}") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"Menda config file {path} is not valid INI: line {exc.lineno} comes before "
            "any [profile] section"
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"Menda config file {path} is not valid INI: profile [{shown(exc.section)}] "
            f"appears twice (line {exc.lineno})"
        ) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"Menda config file {path} is not valid INI: key {shown(exc.option)!r} appears twice "
            f"in profile [{shown(exc.section)}] (line {exc.lineno})"
        ) from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(lineno) for lineno, _line in _parsing_errors(exc))
        raise ConfigError(
            f"Menda config file {path} is not valid INI: cannot parse line {lines}"
        ) from None
    except configparser.Error:
        raise ConfigError(f"Menda config file {path} is not valid INI") from None
    return parser


def _parsing_errors(exc: configparser.ParsingError) -> list[tuple[int, str]]:
    return [(int(lineno), str(line)) for lineno, line in exc.errors]


def identity_from_profile(parser: configparser.ConfigParser, profile: str, path: Path) -> Identity:
    """The identity a profile section describes, or a typed error naming file and profile."""
    if not parser.has_section(profile):
        names = parser.sections()
        known = ", ".join(shown(name, 32) for name in names[:10]) or "none"
        if len(names) > 10:
            known += f" and {len(names) - 10} more"
        raise ProfileNotFoundError(
            f"No profile [{shown(profile)}] in {path} (profiles there: {known}). "
            f"Fix {ENV_PROFILE} or add a [{shown(profile)}] section with host = ..."
        )
    section = parser[profile]
    where = f"Profile [{shown(profile)}] in {path}"
    raw_host = section.get("host", "").strip()
    if not raw_host:
        raise ProfileMissingHostError(
            f"{where} has no host. Add host = https://<your menda-cloud> to it."
        )
    host = normalise_host(raw_host, where)
    auth_type = section.get("auth_type", "").strip().lower() or "u2m"
    if auth_type == "u2m":
        return Identity(
            source="profile",
            auth_type="u2m",
            host=host,
            cache_key=f"u2m:{profile}",
            profile=profile,
        )
    if auth_type != "m2m":
        raise ConfigError(f"{where} has auth_type={shown(auth_type)!r}; expected u2m or m2m")
    client_id = section.get("client_id", "").strip()
    client_secret = section.get("client_secret", "").strip()
    if not client_id or not client_secret:
        raise MissingClientCredentialsError(
            f"{where} has auth_type=m2m but is missing client_id or client_secret"
        )
    return Identity(
        source="profile",
        auth_type="m2m",
        host=host,
        cache_key=f"m2m:profile:{profile}",
        profile=profile,
        client_id=client_id,
        client_secret=client_secret,
    )


def home_from_env(env: Mapping[str, str]) -> Path:
    """The home folder the caller means: ``HOME`` as it sees it, else the password database."""
    home = env.get("HOME")
    return Path(home) if home else Path(os.path.expanduser("~"))
