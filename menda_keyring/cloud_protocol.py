"""The menda-cloud protocol without I/O, in the manner of h11.

Builds the two requests of the contract and turns responses into tokens or typed
errors. The in-process resolver sends them with the standard library, the daemon
with aiohttp; both share every decision made here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from . import __version__
from .errors import (
    AccessTokenRejected,
    MendaCloudAPIError,
    NoCachedLoginError,
    TransientError,
    shown,
)
from .identity import Identity
from .tokens import AccessToken, RegistryToken
from .urls import RegistryTarget

USER_AGENT = f"menda-keyring/{__version__}"
OAUTH_PATH = "/oauth2/token"
REGISTRY_PATH = "/api/v1/auth/registry/token"
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    what: str  # "oauth2/token" or "registry/token", for messages
    #: What this request carries that no message may show, even if echoed back.
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes = field(repr=False)


def oauth_request(identity: Identity) -> HttpRequest:
    """``POST {host}/oauth2/token`` with client credentials in the body (RFC 6749 2.3.1)."""
    body = urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": identity.client_id or "",
            "client_secret": identity.client_secret or "",
        }
    ).encode("ascii")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    return HttpRequest(
        "POST",
        identity.host + OAUTH_PATH,
        headers,
        body,
        "oauth2/token",
        (identity.client_secret or "",),
    )


def registry_request(host: str, access_token: str, target: RegistryTarget) -> HttpRequest:
    """``POST {host}/api/v1/auth/registry/token`` for one CodeArtifact domain."""
    body = json.dumps(
        {
            "registry": "codeartifact",
            "domain": target.domain,
            "domain_owner": target.owner,
            "region": target.region,
        }
    ).encode("utf-8")
    headers = {
        "Authorization": f"Bearer {access_token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    return HttpRequest(
        "POST", host + REGISTRY_PATH, headers, body, "registry/token", (access_token,)
    )


# -- what a transport says when no HTTP answer came: one wording for both drivers ----------


def no_answer(request: HttpRequest, timeout: float) -> TransientError:
    return TransientError(f"menda-cloud {request.url}: no answer within {timeout:.1f} s")


def cannot_connect(request: HttpRequest, reason: str) -> TransientError:
    return TransientError(f"menda-cloud {request.url}: cannot connect ({reason})")


def connection_failed(request: HttpRequest, error: BaseException) -> TransientError:
    return TransientError(f"menda-cloud {request.url}: connection failed ({type(error).__name__})")


def tls_error(request: HttpRequest, detail: object) -> TransientError:
    return TransientError(f"menda-cloud {request.url}: TLS error ({detail})")


def tls_verification_failed(request: HttpRequest, detail: object) -> MendaCloudAPIError:
    """Not transient: retrying cannot make an untrusted certificate trusted."""
    return MendaCloudAPIError(
        f"menda-cloud {request.url}: TLS certificate verification failed ({detail}); "
        "check SSL_CERT_FILE or the system trust store"
    )


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the contract uses delta-seconds); anything else: None."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    return float(min(int(value), 3600))


def _json_body(response: HttpResponse, where: str) -> object:
    try:
        return json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MendaCloudAPIError(
            f"{where} answered HTTP {response.status} with a body that is not JSON",
            response.status,
        ) from None


#: How much of menda-cloud's error code or description is kept before redaction.
RAW_ERROR_TEXT = 2000


def _error_text(response: HttpResponse) -> str:
    """The short error code and description menda-cloud sent, cleaned for display."""
    try:
        data = json.loads(response.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    code = data.get("error")
    text = data.get("error_description") or data.get("message")
    # Bounded but not cut short here: ``errors.redact`` blanks any echoed secret first and
    # only then cuts the whole message to ``MAX_MESSAGE``.
    parts = [p[:RAW_ERROR_TEXT] for p in (code, text) if isinstance(p, str) and p]
    return ": " + " - ".join(parts) if parts else ""


def _check_transient(response: HttpResponse, where: str) -> None:
    if response.status == 429 or response.status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise TransientError(
            f"{where} is unavailable (HTTP {response.status}){_error_text(response)}",
            response.status,
            retry_after,
        )


def parse_oauth_response(response: HttpResponse, identity: Identity, now: float) -> AccessToken:
    """A machine access token from a 200, or the typed error the response means."""
    where = f"menda-cloud {identity.host}{OAUTH_PATH}"
    _check_transient(response, where)
    if response.status != 200:
        hint = ""
        if response.status in (400, 401):
            hint = f"; check the client_id and client_secret of {identity.label}"
        raise MendaCloudAPIError(
            f"{where} refused the client credentials (HTTP {response.status})"
            f"{_error_text(response)}{hint}",
            response.status,
        )
    data = _json_body(response, where)
    token = data.get("access_token") if isinstance(data, dict) else None
    expires_in = data.get("expires_in") if isinstance(data, dict) else None
    token_type = data.get("token_type", "Bearer") if isinstance(data, dict) else None
    if (
        not isinstance(token, str)
        or not token
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, (int, float))
        or expires_in <= 0
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
    ):
        raise MendaCloudAPIError(
            f"{where} answered HTTP 200 with a body of the wrong shape "
            "(expected access_token, token_type Bearer and a positive expires_in)",
            response.status,
        )
    return AccessToken(token, now + float(expires_in), identity.host, identity.auth_type)


def parse_registry_response(
    response: HttpResponse, identity: Identity, target: RegistryTarget, now: float
) -> RegistryToken:
    """A CodeArtifact token from a 200, or the typed error the response means."""
    where = f"menda-cloud {identity.host}{REGISTRY_PATH}"
    domain = f"{target.domain}-{target.owner} ({target.region})"
    _check_transient(response, where)
    if response.status == 401:
        if identity.auth_type == "u2m":
            raise NoCachedLoginError(
                f"No valid cached token: menda-cloud {identity.host} rejected the signed-in "
                f"token of {identity.label}. Run menda auth login"
                + (
                    f" --profile {shown(identity.profile or '')}"
                    if identity.profile != "default"
                    else ""
                )
            )
        raise AccessTokenRejected(
            f"{where} rejected the machine token of {identity.label} (HTTP 401)"
            f"{_error_text(response)}",
            401,
        )
    if response.status == 403:
        raise MendaCloudAPIError(
            f"{where}: {identity.label} may not use CodeArtifact domain {domain} (HTTP 403)"
            f"{_error_text(response)}",
            403,
        )
    if response.status == 404:
        raise MendaCloudAPIError(
            f"{where}: no CodeArtifact domain {domain} for this tenant (HTTP 404)"
            f"{_error_text(response)}",
            404,
        )
    if response.status != 200:
        raise MendaCloudAPIError(
            f"{where} answered HTTP {response.status}{_error_text(response)}", response.status
        )
    data = _json_body(response, where)
    token = data.get("token") if isinstance(data, dict) else None
    expiration = data.get("expiration") if isinstance(data, dict) else None
    username = data.get("username", "aws") if isinstance(data, dict) else None
    expires_at = parse_rfc3339(expiration) if isinstance(expiration, str) else None
    if (
        not isinstance(token, str)
        or not token
        or expires_at is None
        or not isinstance(username, str)
    ):
        raise MendaCloudAPIError(
            f"{where} answered HTTP 200 with a body of the wrong shape "
            "(expected token and an RFC 3339 expiration)",
            response.status,
        )
    result = RegistryToken(token, expires_at, now, username or "aws")
    if not result.servable(now):
        raise MendaCloudAPIError(
            f"{where} returned a CodeArtifact token for {domain} that is already expired "
            "or about to expire; check the clock of this machine",
            response.status,
        )
    return result


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def parse_rfc3339(value: str) -> float | None:
    """Unix time of an RFC 3339 timestamp, or None when it is not one."""
    match = _RFC3339.fullmatch(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    fraction = float(match[7]) if match[7] else 0.0
    zone = match[8]
    if zone in ("Z", "z"):
        tz = timezone.utc
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)
    except ValueError:
        return None
    return moment.timestamp() + fraction
