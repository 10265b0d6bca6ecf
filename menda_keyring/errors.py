"""Typed errors of menda-keyring: one base class, one class per thing the user can fix.

Messages name the file, profile and host involved and never a secret or token,
because keyring prints them verbatim to the terminal and to CI logs. Each error
can be rebuilt from ``(kind, message, status_code)`` so that the daemon can send
it over its socket and the shim can raise the very same class: every class
registers its ``kind`` when it is defined (:func:`error_class` looks it up), so
what the decoder knows never depends on which modules happen to be imported.

Standard library only, and no imports at all: the keyring start-up path may load it.
The same classes are importable as ``menda.error.exceptions``.
"""

from __future__ import annotations

#: kind -> class, filled as each class is defined (``MendaError.__init_subclass__``).
_BY_KIND: dict[str, type[MendaError]] = {}


class MendaError(Exception):
    """Base of every error this package raises on purpose."""

    kind = "menda_error"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" not in cls.__dict__:
            return  # travels as its nearest ancestor with a kind of its own
        other = _BY_KIND.get(cls.kind)
        if other is not None and other is not cls:
            raise TypeError(f"kind {cls.kind!r} of {cls.__name__} is already {other.__name__}'s")
        _BY_KIND[cls.kind] = cls

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


_BY_KIND[MendaError.kind] = MendaError


def error_class(kind: object) -> type[MendaError]:
    """The class registered for ``kind``; MendaError for a kind this version does not know."""
    return _BY_KIND.get(kind, MendaError) if isinstance(kind, str) else MendaError


def known_kinds() -> dict[str, type[MendaError]]:
    """Every registered kind (a copy), for tests and documentation."""
    return dict(_BY_KIND)


class ConfigError(MendaError):
    """The profile file or the environment is not usable as it stands."""

    kind = "config_error"


class ConfigFileNotFoundError(ConfigError):
    kind = "config_file_not_found"


class ProfileNotFoundError(ConfigError):
    kind = "profile_not_found"


class ProfileMissingHostError(ConfigError):
    kind = "profile_missing_host"


class MissingClientCredentialsError(ConfigError):
    kind = "missing_client_credentials"


class InvalidHostError(ConfigError):
    kind = "invalid_host"


class NotCodeArtifactError(ConfigError):
    """A URL given to ``menda-keyring token``/``exec --index`` is not a CodeArtifact registry."""

    kind = "not_codeartifact"


class IndexCredentialsError(ConfigError):
    """``menda-keyring exec`` cannot hand an index its credentials (no token, or no variable
    that would carry them); raised before the command runs."""

    kind = "index_credentials"


class NoCachedLoginError(MendaError):
    """A u2m profile has no usable token from ``menda auth login``."""

    kind = "no_cached_login"


class InvalidLoginEntryError(NoCachedLoginError):
    """A signed-in user's cache entry cannot be refreshed as written: a member of the wrong
    type, or a host other than the profile's (its refresh token is never sent elsewhere).
    The entry is left as it is, for ``menda auth login`` to replace."""

    kind = "invalid_login_entry"


class MendaCloudAPIError(MendaError):
    """menda-cloud answered with an error, an unusable body, or not at all.

    ``status_code`` is the HTTP status, or None when no answer arrived. When retrying was
    given up, ``transient`` says menda-cloud was busy or unreachable (not a refusal), and
    ``retry_after`` is the wait it last asked for (``Retry-After``), if any.
    """

    kind = "menda_cloud_api_error"
    transient = False

    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        retry_after: float | None = None,
        transient: bool = False,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        if transient:
            self.transient = True


class ResolutionTimeoutError(MendaCloudAPIError):
    """The whole resolution ran past its ceiling: a keyring call never hangs."""

    kind = "resolution_timeout"


class TransientError(MendaCloudAPIError):
    """Worth another try after ``retry_after`` seconds (None: use backoff)."""

    kind = "menda_cloud_transient"
    transient = True


class AccessTokenRejected(MendaCloudAPIError):
    """menda-cloud said 401 invalid_token: get a new Menda token (a machine's by OAuth, a
    user's by refreshing the login) once, and retry once."""

    kind = "menda_access_token_rejected"


class DaemonProtocolError(MendaError):
    """The daemon and its client did not understand each other (never the user's to fix).

    The daemon answers with one of these; the shim then resolves in process at once.
    """

    kind = "daemon_protocol_error"


class BadRequestError(DaemonProtocolError):
    """A request the daemon cannot read: not JSON, wrong field types, unknown op, too long."""

    kind = "bad_request"


class UnsupportedVersionError(DaemonProtocolError):
    """A request in a protocol version the daemon does not speak (a newer shim, usually)."""

    kind = "unsupported_version"


class DaemonBusy(DaemonProtocolError):
    """The daemon cannot take this request now (saturated, or stopping): resolve in process."""

    kind = "daemon_busy"


def shown(value: str, limit: int = 64) -> str:
    """A user-supplied value as messages show it: never more than ``limit`` characters."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


#: Messages are cut to this length once secrets are blanked (a gateway may echo a lot).
MAX_MESSAGE = 600
#: Any run of this many consecutive characters of a secret (or of an encoded form of it)
#: is blanked too: an echo cut short, or a secret glued to other text, still leaks.
FRAGMENT = 12
BLANK = "***"


def secret_forms(secret: str) -> set[str]:
    """The forms a request may have carried ``secret`` in, and a server may echo it in."""
    import json
    from urllib.parse import quote, quote_plus

    forms = {
        secret,
        quote_plus(secret),  # application/x-www-form-urlencoded
        quote(secret),
        quote(secret, safe=""),
        quote(quote_plus(secret), safe=""),  # a form value percent-encoded once more
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return {form for form in forms if len(form) >= 4}


def redacted_text(message: str, secrets: tuple[str, ...]) -> str:
    """``message`` with every form of every secret, and every long fragment of one, blanked."""
    marked = bytearray(len(message))
    for secret in secrets:
        if not secret or len(secret) < 4:
            continue
        for form in secret_forms(secret):
            start = message.find(form)
            while start >= 0:
                marked[start : start + len(form)] = b"\1" * len(form)
                start = message.find(form, start + 1)
            if len(form) < FRAGMENT:
                continue
            grams = {form[i : i + FRAGMENT] for i in range(len(form) - FRAGMENT + 1)}
            for i in range(len(message) - FRAGMENT + 1):
                if message[i : i + FRAGMENT] in grams:
                    marked[i : i + FRAGMENT] = b"\1" * FRAGMENT
    if not any(marked):
        return message
    out: list[str] = []
    for i, ch in enumerate(message):
        if not marked[i]:
            out.append(ch)
        elif i == 0 or not marked[i - 1]:
            out.append(BLANK)
    return "".join(out)


def redact(error: MendaError, secrets: tuple[str, ...]) -> MendaError:
    """Blank out any secret menda-cloud (or a gateway) echoed back, then keep it short.

    Blanking comes first and the cut last, so a cut can never leave part of a secret
    that a whole-secret match would have caught.
    """
    message = shown(redacted_text(error.message, secrets), MAX_MESSAGE)
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error
