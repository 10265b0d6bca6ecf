"""A faithful fake of menda-cloud (docs/menda-cloud-api.md), on a real loopback HTTP server.

In process::

    with FakeMendaCloud() as cloud:
        cloud.add_client("ci", "s3cret")
        ... cloud.url, cloud.counts(), cloud.inject("registry", status=503, retry_after=2)

From another process, :class:`FakeCloudControl` offers the same methods over
``/_fake/call/<method>``.
"""

from __future__ import annotations

import functools
import json
import math
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from tests.fakes._server import QuietHandler, QuietHTTPServer, ServerRunner

DEFAULT_DOMAIN = "menda-private"
DEFAULT_OWNER = "058264169513"
DEFAULT_REGION = "eu-west-1"
#: Where faults are injected: ``oauth`` (client credentials), ``refresh`` (the refresh grant
#: at the same ``/oauth2/token``) and ``registry``.
ENDPOINTS = ("oauth", "refresh", "registry")
#: The public client ``menda auth login`` signs in with.
LOGIN_CLIENT_ID = "menda-cli"

_DEFAULT_ERRORS: dict[str, dict[int, str]] = {
    "oauth": {400: "invalid_request", 401: "invalid_client", 403: "unauthorized_client"},
    "refresh": {400: "invalid_grant", 401: "invalid_client", 403: "unauthorized_client"},
    "registry": {
        400: "invalid_request",
        401: "invalid_token",
        403: "forbidden",
        404: "unknown_registry",
    },
}
_GENERIC_ERRORS = {429: "too_many_requests", 500: "internal_error", 502: "bad_gateway"}
_GENERIC_ERRORS.update({503: "service_unavailable", 504: "gateway_timeout"})


def rfc3339(ts: float) -> str:
    """Format a Unix time as RFC 3339 UTC with whole seconds and a ``Z``."""
    return datetime.fromtimestamp(int(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_error_body(endpoint: str, status: int) -> dict[str, str]:
    """A contract-shaped JSON error for ``status`` on ``endpoint``."""
    code = _DEFAULT_ERRORS.get(endpoint, {}).get(status) or _GENERIC_ERRORS.get(status, "error")
    text = f"injected fault: HTTP {status}"
    if endpoint in ("oauth", "refresh"):
        return {"error": code, "error_description": text}
    return {"error": code, "message": text}


def _header_value(value: int | float | str) -> str:
    """Render a Retry-After value: ``2.0`` -> ``"2"``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass
class Fault:
    """One injected misbehaviour, consumed by one request to its endpoint."""

    endpoint: str
    status: int | None = None
    body: str | bytes | dict[str, Any] | list[Any] | None = None
    retry_after: int | float | str | None = None
    delay: float = 0.0
    content_type: str | None = None
    expired: bool = False
    close: bool = False


@dataclass
class AccessToken:
    """A Menda access token (machine or user) as the fake remembers it."""

    identity: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    """A user's refresh token. ``family``: every token rotated from one login shares it, so
    that reusing a dead one revokes them all (reuse detection, as real servers do)."""

    user: str
    client_id: str
    expires_at: float
    family: str
    used: bool = False
    revoked: bool = False


@dataclass
class RegistryToken:
    """A CodeArtifact authorization token issued by the exchange."""

    domain: str
    owner: str
    region: str
    expires_at: float
    identity: str
    revoked: bool = False


class FakeMendaCloud(ServerRunner):
    """In-process fake menda-cloud: ``/oauth2/token``, the registry exchange and ``/_fake/*``.

    ``prefix`` (e.g. ``"/menda"``) mounts everything below a path prefix, like a gateway.
    ``clock`` replaces ``time.time`` for expiry decisions (tests of expiry without sleeping).
    """

    #: requests per endpoint, and its 200 answers. ``refresh`` and ``refresh_ok`` are counted
    #: too but appear only once non-zero, so that an exact ``counts()`` of a test that signs
    #: in nobody also says that no login was refreshed.
    COUNTERS = ("oauth", "oauth_ok", "registry", "registry_ok")

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        prefix: str = "",
        machine_token_lifetime: int = 3600,
        registry_token_lifetime: int = 43200,
        user_token_lifetime: int = 3600,
        refresh_token_lifetime: int = 30 * 86400,
        rotate_refresh_tokens: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.host = host
        self._bind_port = port
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.machine_token_lifetime = machine_token_lifetime
        self.registry_token_lifetime = registry_token_lifetime
        self.user_token_lifetime = user_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.clock = clock
        self.lock = threading.RLock()
        self.clients: dict[str, str] = {}
        self.known_domains: set[tuple[str, str]] = {(DEFAULT_DOMAIN, DEFAULT_OWNER)}
        self.forbidden: set[tuple[str, str]] = set()  # (identity, domain)
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.issued_registry_tokens: dict[str, RegistryToken] = {}
        self._faults: dict[str, deque[Fault]] = {ep: deque() for ep in ENDPOINTS}

    # -- lifecycle -----------------------------------------------------------------------

    def _make_server(self) -> QuietHTTPServer:
        server = QuietHTTPServer((self.host, self._bind_port), _CloudHandler)
        server.cloud = self  # type: ignore[attr-defined]
        return server

    @property
    def url(self) -> str:
        """Base URL (the profile ``host``), e.g. ``http://127.0.0.1:PORT`` (+ prefix)."""
        return f"http://{self.host}:{self.port}{self.prefix}"

    # -- state ---------------------------------------------------------------------------

    def add_client(self, client_id: str, secret: str) -> None:
        """Register (or re-key) a machine client."""
        with self.lock:
            self.clients[client_id] = secret

    def remove_client(self, client_id: str) -> None:
        """Unregister a machine client (its existing tokens stay valid)."""
        with self.lock:
            self.clients.pop(client_id, None)

    def add_domain(self, domain: str, owner: str = DEFAULT_OWNER) -> None:
        """Make ``(domain, owner)`` a known CodeArtifact domain of this tenant."""
        with self.lock:
            self.known_domains.add((domain, owner))

    def forbid(self, identity: str, domain: str) -> None:
        """Make ``identity`` (``client:<id>`` / ``user:<name>``) get 403 for ``domain``."""
        with self.lock:
            self.forbidden.add((identity, domain))

    def allow(self, identity: str, domain: str) -> None:
        """Undo :meth:`forbid`."""
        with self.lock:
            self.forbidden.discard((identity, domain))

    def configure(
        self,
        machine_token_lifetime: int | None = None,
        registry_token_lifetime: int | None = None,
        user_token_lifetime: int | None = None,
        refresh_token_lifetime: int | None = None,
        rotate_refresh_tokens: bool | None = None,
    ) -> None:
        """Change token lifetimes (seconds) for tokens issued from now on, and whether a
        refresh rotates the refresh token (else its answer carries none)."""
        with self.lock:
            if machine_token_lifetime is not None:
                self.machine_token_lifetime = int(machine_token_lifetime)
            if registry_token_lifetime is not None:
                self.registry_token_lifetime = int(registry_token_lifetime)
            if user_token_lifetime is not None:
                self.user_token_lifetime = int(user_token_lifetime)
            if refresh_token_lifetime is not None:
                self.refresh_token_lifetime = int(refresh_token_lifetime)
            if rotate_refresh_tokens is not None:
                self.rotate_refresh_tokens = bool(rotate_refresh_tokens)

    def _new_access_token(self, identity: str, lifetime: float, prefix: str) -> tuple[str, float]:
        token = prefix + secrets.token_urlsafe(32)
        expires_at = self.clock() + lifetime
        with self.lock:
            self.access_tokens[token] = AccessToken(identity, expires_at)
        return token, expires_at

    def issue_user_token(self, user: str = "alice", lifetime: int = 3600) -> tuple[str, int]:
        """Mint a user (u2m) access token as ``menda auth login`` would; returns (token, exp)."""
        expires_at = int(self.clock()) + int(lifetime)
        token = "mut_" + secrets.token_urlsafe(32)
        with self.lock:
            self.access_tokens[token] = AccessToken(f"user:{user}", expires_at)
        return token, expires_at

    def issue_user_login(
        self,
        user: str = "alice",
        lifetime: int = 3600,
        refresh_token: str | None = None,
        client_id: str = LOGIN_CLIENT_ID,
    ) -> dict[str, Any]:
        """What ``menda auth login`` obtains: an access token (``lifetime`` seconds; 0 or
        less: already expired) and a refresh token (``refresh_token``: that very value, for
        leak checks), as the members of its cache entry."""
        expires_at = int(self.clock()) + int(lifetime)
        access = "mut_" + secrets.token_urlsafe(32)
        refresh = refresh_token or "mrt_" + secrets.token_urlsafe(32)
        with self.lock:
            self.access_tokens[access] = AccessToken(f"user:{user}", expires_at)
            self.refresh_tokens[refresh] = RefreshToken(
                user, client_id, self.clock() + self.refresh_token_lifetime, family=refresh
            )
        return {
            "access_token": access,
            "expires_at": expires_at,
            "refresh_token": refresh,
            "client_id": client_id,
        }

    def refresh_token_state(self, token: str) -> str | None:
        """``live``, ``used``, ``revoked`` or ``expired`` for a refresh token; None if unknown."""
        with self.lock:
            entry = self.refresh_tokens.get(token)
            if entry is None:
                return None
            if entry.revoked:
                return "revoked"
            if entry.used:
                return "used"
            return "expired" if entry.expires_at <= self.clock() else "live"

    def refresh_login(
        self, refresh_token: str, client_id: str, expired: bool = False
    ) -> tuple[str | None, dict[str, Any]]:
        """The refresh grant: (error code, description) or (None, the 200 answer).

        Public so that an in-memory transport (the working-week benchmark) grants exactly
        what the HTTP handler does."""
        with self.lock:
            entry = self.refresh_tokens.get(refresh_token)
            if entry is None:
                return "invalid_grant", {"error_description": "unknown refresh token"}
            if entry.used:
                # A dead refresh token used again: someone has a copy. End the whole login.
                for other in self.refresh_tokens.values():
                    if other.family == entry.family:
                        other.revoked = True
                return "invalid_grant", {"error_description": "refresh token already used"}
            if entry.revoked or entry.expires_at <= self.clock():
                return "invalid_grant", {"error_description": "refresh token expired or revoked"}
            if entry.client_id != client_id:
                return "invalid_grant", {"error_description": "issued to another client"}
            lifetime = 1 if expired else max(1, int(self.user_token_lifetime))
            access, _ = self._new_access_token(f"user:{entry.user}", lifetime, "mut_")
            answer: dict[str, Any] = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": lifetime,
            }
            if self.rotate_refresh_tokens:
                entry.used = True
                rotated = "mrt_" + secrets.token_urlsafe(32)
                self.refresh_tokens[rotated] = RefreshToken(
                    entry.user,
                    entry.client_id,
                    self.clock() + self.refresh_token_lifetime,
                    entry.family,
                )
                answer["refresh_token"] = rotated
            return None, answer

    def registry_grant(
        self, identity: str, domain: str, owner: str, region: str, expired: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """The registry exchange for an authenticated ``identity``: (status, JSON answer).

        Public so that an in-memory transport grants exactly what the HTTP handler does.
        ``expired``: a 200 whose token has run out already."""
        with self.lock:
            known = (domain, owner) in self.known_domains
            forbidden = (identity, domain) in self.forbidden
            lifetime = self.registry_token_lifetime
        if not known:
            text = f"no domain {domain}-{owner} for this tenant"
            return 404, {"error": "unknown_registry", "message": text}
        if forbidden:
            return 403, {"error": "forbidden", "message": f"{identity} may not use domain {domain}"}
        now = self.clock()
        expires_at = float(math.floor(now) + int(lifetime))
        if expired:
            expires_at = float(math.floor(now) - 60)
        token = "caat_" + secrets.token_urlsafe(48)
        with self.lock:
            self.issued_registry_tokens[token] = RegistryToken(
                domain, owner, region, expires_at, identity
            )
        return 200, {"token": token, "expiration": rfc3339(expires_at), "username": "aws"}

    def revoke(self, token: str) -> bool:
        """Revoke an access, refresh or registry token; False if unknown."""
        with self.lock:
            entry = (
                self.access_tokens.get(token)
                or self.refresh_tokens.get(token)
                or self.issued_registry_tokens.get(token)
            )
            if entry is None:
                return False
            entry.revoked = True
            return True

    def revoke_all(self) -> int:
        """Revoke every Menda access token issued so far; returns how many."""
        with self.lock:
            for entry in self.access_tokens.values():
                entry.revoked = True
            return len(self.access_tokens)

    def access_token_identity(self, token: str) -> str | None:
        """The identity of a live (issued, unexpired, unrevoked) access token, else None."""
        with self.lock:
            entry = self.access_tokens.get(token)
            if entry is None or entry.revoked or entry.expires_at <= self.clock():
                return None
            return entry.identity

    def is_valid_registry_token(self, token: str, domain: str | None = None) -> bool:
        """True if ``token`` was issued here, is unexpired and unrevoked (and for ``domain``)."""
        with self.lock:
            entry = self.issued_registry_tokens.get(token)
            if entry is None or entry.revoked or entry.expires_at <= self.clock():
                return False
            return domain is None or entry.domain == domain

    def registry_tokens(self) -> list[dict[str, Any]]:
        """Every issued registry token with its scope and expiry (a fake: tokens included)."""
        with self.lock:
            return [
                {"token": tok, **asdict(entry)}
                for tok, entry in self.issued_registry_tokens.items()
            ]

    # -- counters and faults -------------------------------------------------------------

    def inject(
        self,
        endpoint: str,
        status: int | None = None,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        retry_after: int | float | str | None = None,
        delay: float = 0.0,
        times: int = 1,
        content_type: str | None = None,
        expired: bool = False,
        close: bool = False,
    ) -> None:
        """Queue a fault for the next ``times`` requests to ``endpoint`` (FIFO).

        ``delay``: sleep first. ``close``: drop the connection unanswered. ``status``: answer
        that (``body`` defaults to a contract-shaped JSON error). ``retry_after``: add the
        header. ``expired``: a normal 200 whose token is already expired (registry) or
        ``expires_in=1`` (oauth, refresh). Without ``status``/``close`` the request is served normally.
        """
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}, not {endpoint!r}")
        fault = Fault(endpoint, status, body, retry_after, float(delay), content_type)
        fault.expired, fault.close = bool(expired), bool(close)
        with self.lock:
            for _ in range(max(0, int(times))):
                self._faults[endpoint].append(Fault(**asdict(fault)))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self.lock:
            for queue in self._faults.values():
                queue.clear()

    def pending_faults(self, endpoint: str) -> int:
        """How many faults are still queued for ``endpoint``."""
        with self.lock:
            return len(self._faults[endpoint])

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            queue = self._faults[endpoint]
            return queue.popleft() if queue else None


def _form_value(body: bytes, name: str) -> str | None:
    """One value of a form body, or None (an unreadable body is the handler's to refuse)."""
    try:
        values = urllib.parse.parse_qs(body.decode("utf-8")).get(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return values[0] if values else None


class _CloudHandler(QuietHandler):
    """Request handler; the fake's state lives on ``self.server.cloud``."""

    @property
    def cloud(self) -> FakeMendaCloud:
        return self.server.cloud  # type: ignore[attr-defined]

    # -- dispatch ------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        body = self.read_body()
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        prefix = self.cloud.prefix
        if prefix:
            if path != prefix and not path.startswith(prefix + "/"):
                self.send_json(404, {"error": "not_found", "message": f"no route {path}"})
                return
            path = path[len(prefix) :] or "/"
        path = path.rstrip("/") or "/"
        if path == "/oauth2/token":
            if method != "POST":
                self.send_json(405, {"error": "invalid_request"}, {"Allow": "POST"})
                return
            endpoint = "refresh" if _form_value(body, "grant_type") == "refresh_token" else "oauth"
            self._with_faults(endpoint, body, self._oauth)
        elif path == "/api/v1/auth/registry/token":
            if method != "POST":
                self.send_json(405, {"error": "invalid_request"}, {"Allow": "POST"})
                return
            self._with_faults("registry", body, self._registry)
        elif path.startswith("/_fake/"):
            self._control(method, path[len("/_fake/") :], body)
        else:
            self.send_json(404, {"error": "not_found", "message": f"no route {path}"})

    def _with_faults(
        self,
        endpoint: str,
        body: bytes,
        serve: Callable[[bytes, Fault | None], tuple[int, dict[str, Any], dict[str, str]]],
    ) -> None:
        cloud = self.cloud
        cloud._count(endpoint)
        fault = cloud._next_fault(endpoint)
        if fault is not None and fault.delay > 0:
            cloud.stopping.wait(fault.delay)
        if fault is not None and fault.close:
            self.close_connection = True
            return
        headers: dict[str, str] = {}
        if fault is not None and fault.retry_after is not None:
            headers["Retry-After"] = _header_value(fault.retry_after)
        if fault is not None and fault.status is not None:
            status, payload, ctype = self._fault_payload(fault)
            if status == 200:
                cloud._count(endpoint + "_ok")
            self.send_bytes(status, payload, ctype, headers)
            return
        status, obj, extra = serve(body, fault)
        headers.update(extra)
        if status == 200:
            cloud._count(endpoint + "_ok")
        self.send_json(status, obj, headers)

    @staticmethod
    def _fault_payload(fault: Fault) -> tuple[int, bytes, str | None]:
        status = int(fault.status or 500)
        body = fault.body
        if body is None:
            return (
                status,
                json.dumps(default_error_body(fault.endpoint, status)).encode(),
                (fault.content_type or "application/json"),
            )
        if isinstance(body, (dict, list)):
            return status, json.dumps(body).encode(), fault.content_type or "application/json"
        raw = body.encode() if isinstance(body, str) else bytes(body)
        ctype = fault.content_type
        if ctype is None:
            try:
                json.loads(raw)
                ctype = "application/json"
            except ValueError:
                ctype = "text/plain; charset=utf-8"
        return status, raw, ctype

    def _content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    # -- section 1: OAuth2 client credentials --------------------------------------------

    def _oauth(
        self, body: bytes, fault: Fault | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        cloud = self.cloud
        no_store = {"Cache-Control": "no-store", "Pragma": "no-cache"}

        def error(status: int, code: str, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
            return status, {"error": code, "error_description": text}, no_store

        if self._content_type() != "application/x-www-form-urlencoded":
            return error(400, "invalid_request", "Content-Type must be form-urlencoded")
        try:
            form = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            return error(400, "invalid_request", "malformed form body")
        for key, values in form.items():
            if len(values) > 1:
                return error(400, "invalid_request", f"parameter {key} repeated")
        params = {k: v[0] for k, v in form.items()}
        if params.get("grant_type") == "refresh_token":
            refresh_token, client_id = params.get("refresh_token"), params.get("client_id")
            if not refresh_token or not client_id:
                return error(400, "invalid_request", "refresh_token and client_id are required")
            code, answer = cloud.refresh_login(
                refresh_token, client_id, fault is not None and fault.expired
            )
            if code is not None:
                return error(400, code, answer["error_description"])
            return 200, answer, no_store
        if params.get("grant_type") != "client_credentials":
            return error(400, "invalid_request", "grant_type must be client_credentials")
        client_id, secret = params.get("client_id"), params.get("client_secret")
        if not client_id or not secret:
            return error(400, "invalid_request", "client_id and client_secret are required")
        with cloud.lock:
            expected = cloud.clients.get(client_id)
            lifetime = cloud.machine_token_lifetime
        if expected is None or not secrets.compare_digest(expected, secret):
            return error(401, "invalid_client", "unknown client or bad secret")
        if fault is not None and fault.expired:
            lifetime = 1
        lifetime = max(1, int(lifetime))
        token, _ = cloud._new_access_token(f"client:{client_id}", lifetime, "mat_")
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        return 200, answer, no_store

    # -- section 2: registry token exchange ----------------------------------------------

    def _registry(
        self, body: bytes, fault: Fault | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        cloud = self.cloud

        def error(
            status: int, code: str, text: str, headers: dict[str, str] | None = None
        ) -> tuple[int, dict[str, Any], dict[str, str]]:
            return status, {"error": code, "message": text}, headers or {}

        auth = self.headers.get("Authorization", "")
        scheme, _, bearer = auth.partition(" ")
        bearer = bearer.strip()
        if scheme.lower() != "bearer" or not bearer:
            return error(
                401, "invalid_token", "missing bearer token", {"WWW-Authenticate": "Bearer"}
            )
        identity = cloud.access_token_identity(bearer)
        if identity is None:
            return error(
                401,
                "invalid_token",
                "access token is unknown, expired or revoked",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        if self._content_type() != "application/json":
            return error(400, "invalid_request", "Content-Type must be application/json")
        try:
            req = json.loads(body)
        except ValueError:
            return error(400, "invalid_request", "body is not JSON")
        if not isinstance(req, dict):
            return error(400, "invalid_request", "body must be a JSON object")
        if req.get("registry") != "codeartifact":
            return error(400, "invalid_request", "registry must be 'codeartifact'")
        fields = {k: req.get(k) for k in ("domain", "domain_owner", "region")}
        for key, value in fields.items():
            if not isinstance(value, str) or not value:
                return error(400, "invalid_request", f"{key} must be a non-empty string")
        domain, owner, region = fields["domain"], fields["domain_owner"], fields["region"]
        assert isinstance(domain, str) and isinstance(owner, str) and isinstance(region, str)
        status, answer = cloud.registry_grant(
            identity, domain, owner, region, fault is not None and fault.expired
        )
        if status != 200:
            return error(status, answer["error"], answer["message"])
        return 200, answer, {}

    # -- /_fake/call/<method> control plane -----------------------------------------------

    def _control(self, method: str, name: str, body: bytes) -> None:
        """``POST /_fake/call/<method>`` with ``{"args": [...], "kwargs": {...}}``: one of
        ``CONTROL_METHODS`` on the fake, its result as JSON."""
        called = name.removeprefix("call/")
        if method != "POST" or called == name or called not in CONTROL_METHODS:
            self.send_json(404, {"error": "not_found", "message": f"no control {name!r}"})
            return
        try:
            call = json.loads(body) if body.strip() else {}
            if not isinstance(call, dict):
                raise ValueError("control body must be a JSON object")
            args, kwargs = call.get("args", []), call.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError("args must be a list and kwargs an object")
            result = getattr(self.cloud, called)(*args, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            self.send_json(400, {"error": "invalid_request", "message": repr(exc)})
            return
        self.send_json(200, {"result": result})


#: What another process may call on a fake through :class:`FakeCloudControl`.
CONTROL_METHODS = frozenset(
    {
        "add_client",
        "remove_client",
        "add_domain",
        "forbid",
        "allow",
        "configure",
        "issue_user_token",
        "issue_user_login",
        "refresh_token_state",
        "revoke",
        "revoke_all",
        "access_token_identity",
        "is_valid_registry_token",
        "registry_tokens",
        "counts",
        "reset_counts",
        "inject",
        "clear_faults",
        "pending_faults",
    }
)


class FakeCloudControl:
    """Drives a fake menda-cloud running elsewhere through ``/_fake/call/<method>``.

    Offers the methods of :class:`FakeMendaCloud` named in ``CONTROL_METHODS``, with the
    same arguments, so tests can take either (JSON turns a returned tuple into a list).
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {self.url}")

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` on the fake; its failures raise RuntimeError here."""
        data = json.dumps({"args": args, "kwargs": kwargs}).encode()
        req = urllib.request.Request(f"{self.url}/_fake/call/{method}", data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())["result"]
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"fake control {method} failed: {exc.code} {detail}") from None

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in CONTROL_METHODS:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
        return functools.partial(self.call, name)


# Control traffic is loopback: never send it through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
