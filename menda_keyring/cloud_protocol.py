"""The menda-cloud protocol without I/O, in the manner of h11.

Builds the requests of the contract and turns responses into tokens or typed
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
)
from .identity import Identity
from .tokens import AccessToken, RefreshedLogin, RefreshGrant, RegistryToken
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
    what: str  # "oauth2/token", REFRESH_WHAT or "registry/token", for messages
    #: What this request carries that no message may show, even if echoed back.
    secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes = field(repr=False)


def oauth_request(identity: Identity) -> HttpRequest:
    """``POST {host}/oauth2/token`` with client credentials in the body (RFC 6749 2.3.1)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": identity.client_id or "",
        "client_secret": identity.client_secret or "",
    }
    return _token_request(identity.host, form, "oauth2/token", identity.client_secret or "")


#: ``HttpRequest.what`` of a refresh: the token endpoint, with the refresh grant.
REFRESH_WHAT = "oauth2/token refresh"


def refresh_request(host: str, grant: RefreshGrant) -> HttpRequest:
    """``POST {host}/oauth2/token`` with ``grant_type=refresh_token`` (RFC 6749 section 6).

    ``host`` is the profile's, which the entry's must equal (checked when it was read).
    """
    form = {
        "grant_type": "refresh_token",
        "refresh_token": grant.refresh_token,
        "client_id": grant.client_id,
    }
    return _token_request(host, form, REFRESH_WHAT, grant.refresh_token)


def _token_request(host: str, form: dict[str, str], what: str, secret: str) -> HttpRequest:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    body = urlencode(form).encode("ascii")
    return HttpRequest("POST", host + OAUTH_PATH, headers, body, what, (secret,))


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
    return _access_token_answer(data, response, where, identity, now)


def parse_refresh_response(
    response: HttpResponse, identity: Identity, now: float
) -> RefreshedLogin:
    """A refreshed user login from a 200, or the typed error the response means.

    Any 400 or 401 (``invalid_grant``: expired, revoked or already used; ``invalid_client``
    and the like) is a :class:`NoCachedLoginError` naming the code: the login is over.
    """
    where = f"menda-cloud {identity.host}{OAUTH_PATH}"
    _check_transient(response, where)
    if response.status in (400, 401):
        raise NoCachedLoginError(
            f"{where} refused to refresh the login (HTTP {response.status}){_error_text(response)}"
        )
    if response.status != 200:
        raise MendaCloudAPIError(
            f"{where} refused to refresh the login (HTTP {response.status}){_error_text(response)}",
            response.status,
        )
    data = _json_body(response, where)
    access = _access_token_answer(data, response, where, identity, now)
    refresh_token = data.get("refresh_token") if isinstance(data, dict) else None
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise MendaCloudAPIError(
            f"{where} answered HTTP 200 with a body of the wrong shape "
            "(refresh_token, when given, must be a non-empty string)",
            response.status,
        )
    return RefreshedLogin(access, refresh_token)


def _access_token_answer(
    data: object, response: HttpResponse, where: str, identity: Identity, now: float
) -> AccessToken:
    """The access token of a token endpoint's 200 (section 1's shape), or a typed error."""
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
        kind = "signed-in" if identity.auth_type == "u2m" else "machine"
        raise AccessTokenRejected(
            f"{where} rejected the {kind} token of {identity.label} (HTTP 401)"
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
