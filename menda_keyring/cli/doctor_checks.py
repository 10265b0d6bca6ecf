"""What ``menda-keyring doctor`` concludes, link by link, from facts gathered elsewhere.

No I/O: each function takes the facts a probe gathered (``doctor_probes``) and returns
:class:`Check` results, so every verdict and every "what to do" is tested directly. A link
that cannot be judged because an earlier one broke is *skipped*, not failed, so that
exactly the broken link fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import MendaCloudAPIError, MendaError
from ..identity import ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_HOST, Identity
from ..tokens import ACCESS_TOKEN_MARGIN
from ..urls import CODEARTIFACT_USERNAME, RegistryTarget, parse_codeartifact_service
from .project_indexes import IndexRef

OUR_BACKEND = "menda_keyring.backend.MendaCodeArtifactKeyring"
CHAINER = "keyring.backends.chainer.ChainerBackend"
INSTALL = "uv tool install keyring --with menda-keyring"


@dataclass(frozen=True)
class Check:
    """One link's verdict: ``ok`` True (holds), False (broken) or None (skipped)."""

    name: str
    ok: bool | None
    found: str
    fix: str = ""

    @property
    def status(self) -> str:
        return {True: "ok", False: "fail", None: "skipped"}[self.ok]

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "status": self.status,
            "found": self.found,
            "fix": self.fix if self.ok is False else None,
        }


def skipped(name: str, why: str) -> Check:
    """A link not judged because ``why`` (an earlier link broke, or nothing to check)."""
    return Check(name, None, why)


def when(moment: float, now: float) -> str:
    """``2026-12-02 10:00:00 UTC (in 42 min)``: an expiry as people read it."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))
    delta = moment - now
    span = abs(delta)
    amount = f"{span:.0f} s" if span < 120 else f"{span / 60:.0f} min"
    if span >= 7200:
        amount = f"{span / 3600:.1f} h"
    return f"{stamp} ({'in ' + amount if delta >= 0 else amount + ' ago'})"


def display_url(url: str) -> str:
    """``url`` with any password in it replaced by ``***`` (a URL may carry a token)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "(an unparsable URL)"


# -- 1. the keyring executable ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyringFacts:
    """What the first ``keyring`` on PATH is and says."""

    path: str | None
    interpreter: str | None = None
    #: ``--list-backends`` as (class path, priority); None when it could not be listed.
    backends: tuple[tuple[str, float | None], ...] | None = None
    list_error: str | None = None
    env_backend: str | None = None  # PYTHON_KEYRING_BACKEND
    config_path: str | None = None  # keyringrc.cfg as that keyring reports it
    config_backend: str | None = None  # its [backend] default-keyring


_BACKEND_LINE = re.compile(r"^(?P<name>[\w.]+) \(priority: (?P<priority>[-+0-9.eE]+|\w+)\)$")


def parse_backend_list(text: str) -> tuple[tuple[str, float | None], ...]:
    """``keyring --list-backends`` output as (class path, priority) pairs."""
    out: list[tuple[str, float | None]] = []
    for line in text.splitlines():
        match = _BACKEND_LINE.match(line.strip())
        if match:
            try:
                priority: float | None = float(match["priority"])
            except ValueError:
                priority = None
            out.append((match["name"], priority))
    return tuple(out)


def keyring_checks(facts: KeyringFacts) -> list[Check]:
    """Is ``keyring`` on PATH, does it list our backend, and will it use it?"""
    if facts.path is None:
        return [
            Check(
                "keyring on PATH",
                False,
                "no keyring executable on PATH (uv and pip call it by name)",
                f"{INSTALL} (or put the bin folder of the venv that has it on PATH)",
            ),
            skipped("keyring backend", "no keyring on PATH"),
            skipped("keyring selection", "no keyring on PATH"),
        ]
    python = f" (python {facts.interpreter})" if facts.interpreter else ""
    checks = [Check("keyring on PATH", True, f"{facts.path}{python}")]
    backend = _backend_check(facts)
    checks.append(backend)
    if backend.ok:
        checks.append(_selection_check(facts))
    else:
        checks.append(skipped("keyring selection", "our backend is not in this keyring"))
    return checks


def _backend_check(facts: KeyringFacts) -> Check:
    if facts.backends is None:
        return Check(
            "keyring backend",
            False,
            f"{facts.path} --list-backends failed: {facts.list_error or 'no output'}",
            f"run {facts.path} --list-backends yourself; reinstall with {INSTALL}",
        )
    priorities = dict(facts.backends)
    if OUR_BACKEND not in priorities:
        listed = ", ".join(name for name, _ in facts.backends) or "nothing"
        where = f"python {facts.interpreter}" if facts.interpreter else "its environment"
        return Check(
            "keyring backend",
            False,
            f"{facts.path} lists {listed}: menda-keyring is not installed beside it ({where})",
            f"put the keyring that has menda-keyring first on PATH, or {INSTALL}",
        )
    return Check(
        "keyring backend", True, f"lists {OUR_BACKEND} (priority {priorities[OUR_BACKEND]})"
    )


def _selection_check(facts: KeyringFacts) -> Check:
    """Which backend that keyring will use: the variable, else keyringrc.cfg, else priority."""
    backends = facts.backends or ()
    if facts.env_backend:
        chosen, why = facts.env_backend, f"PYTHON_KEYRING_BACKEND={facts.env_backend}"
        fix = f"unset PYTHON_KEYRING_BACKEND (or set it to {CHAINER})"
    elif facts.config_backend:
        chosen = facts.config_backend
        why = f"default-keyring = {chosen} in {facts.config_path}"
        fix = f"remove default-keyring from {facts.config_path} (or set it to {CHAINER})"
    else:
        ranked = sorted(backends, key=lambda b: -1e9 if b[1] is None else b[1], reverse=True)
        chosen = ranked[0][0] if ranked else OUR_BACKEND
        why, fix = f"keyring picks {chosen} by priority", ""
    if chosen == OUR_BACKEND:
        return Check("keyring selection", True, f"{why}: ours")
    if chosen == CHAINER:
        return Check("keyring selection", True, f"{why}, which asks ours first")
    return Check("keyring selection", False, f"{why}: another backend, ours is never asked", fix)


# -- 2. the installers' configuration --------------------------------------------------------


def is_codeartifact(index: IndexRef) -> bool:
    return parse_codeartifact_service(index.url) is not None


def index_label(index: IndexRef) -> str:
    return index.name or display_url(index.url)


def project_checks(
    indexes: Sequence[IndexRef], uv_provider: str | None, pip_provider: str | None, cwd: Path
) -> list[Check]:
    """Which indexes are ours, and whether uv and pip will call keyring for them."""
    ours = [i for i in indexes if is_codeartifact(i)]
    uv_ours = [i for i in ours if i.tool == "uv"]
    pip_ours = [i for i in ours if i.tool == "pip"]
    others = len(indexes) - len(ours)
    if not ours:
        found = f"no CodeArtifact index in the uv or pip configuration seen from {cwd}"
        return [Check("indexes", True, found + (f" ({others} other)" if others else ""))]
    names = "; ".join(f"{index_label(i)} ({i.source})" for i in ours)
    checks = [
        Check("indexes", True, f"CodeArtifact: {names}" + (f"; {others} other" if others else ""))
    ]
    checks += [_uv_index_check(i) for i in uv_ours]
    if uv_ours:
        checks.append(_uv_provider_check(uv_provider))
    if pip_ours:
        checks.append(_pip_provider_check(pip_provider))
    return checks


def _has_password(url: str) -> bool:
    try:
        return urlsplit(url).password is not None
    except ValueError:
        return False


def _uv_index_check(index: IndexRef) -> Check:
    name = f"uv index {index_label(index)}"
    where = f"({index.source})"
    if _has_password(index.url):
        return Check(name, True, f"has a password in its URL {where}: uv does not ask keyring")
    if index.username is not None and index.username != CODEARTIFACT_USERNAME:
        return Check(
            name,
            False,
            f"user name {index.username!r} {where}: CodeArtifact accepts only aws",
            "use aws@ in the URL (https://aws@…)",
        )
    if index.username == CODEARTIFACT_USERNAME:
        return Check(name, True, f"user name aws {where}: uv asks keyring for its password")
    if index.authenticate == "always":
        return Check(name, True, f'authenticate = "always" {where}: uv asks keyring')
    fix = "put aws@ in the URL (https://aws@…)"
    if "[[" in index.source:
        fix += ' or add authenticate = "always" to this index'
    return Check(
        name,
        False,
        f'no user name and no authenticate = "always" {where}: uv never asks keyring',
        fix,
    )


def _uv_provider_check(provider: str | None) -> Check:
    if provider == "subprocess":
        return Check("uv keyring-provider", True, "subprocess: uv runs keyring")
    return Check(
        "uv keyring-provider",
        False,
        f"{provider or 'disabled (uv default)'}: uv never runs keyring",
        'keyring-provider = "subprocess" under [tool.uv] (or UV_KEYRING_PROVIDER=subprocess)',
    )


def _pip_provider_check(provider: str | None) -> Check:
    value = provider or "auto"
    if value in ("subprocess", "import"):
        return Check("pip keyring-provider", True, f"{value}: pip asks keyring")
    if value == "auto":
        return Check(
            "pip keyring-provider",
            True,
            "auto (pip default): pip asks keyring only when it may prompt (not with "
            "--no-input); set keyring-provider = subprocess for CI",
        )
    return Check(
        "pip keyring-provider",
        False,
        f"{value}: pip never asks keyring",
        "PIP_KEYRING_PROVIDER=subprocess, or keyring-provider = subprocess in pip.conf [global]",
    )


# -- 3. identity and files -------------------------------------------------------------------

#: What to do about each kind of error that can name the identity (the README's table).
IDENTITY_FIXES = {
    "config_file_not_found": (
        f"run menda auth configure, or set {ENV_CLIENT_ID}, {ENV_CLIENT_SECRET} and {ENV_HOST}"
    ),
    "profile_not_found": "fix MENDA_PROFILE_ID, or add that [profile] with host = …",
    "profile_missing_host": "add host = https://<your menda-cloud> to the profile",
    "missing_client_credentials": "add client_id and client_secret to the profile",
    "invalid_host": "fix the host named above (https://…)",
    "config_error": "fix the file or variable named above",
}


def identity_check(
    identity: Identity | None, error: MendaError | None, env_set: Iterable[str], config: Path
) -> Check:
    """Which identity wins, or the typed error a ``keyring get`` would show."""
    partial = sorted(set(env_set) & {ENV_CLIENT_ID, ENV_CLIENT_SECRET, ENV_HOST})
    if error is not None or identity is None:
        kind = error.kind if error is not None else "config_error"
        return Check(
            "identity",
            False,
            f"{type(error).__name__}: {error}",
            IDENTITY_FIXES.get(kind, IDENTITY_FIXES["config_error"]),
        )
    if identity.source == "env":
        return Check("identity", True, f"{identity.label}, from the environment trio")
    note = ""
    if partial:
        note = f"; {', '.join(partial)} set but not all three, so ignored"
    return Check("identity", True, f"{identity.label}, from {config}{note}")


@dataclass(frozen=True)
class FileFacts:
    """Modes of the files that hold secrets; ``cache_problem`` is the cache folder's verdict."""

    config: Path
    config_mode: int | None  # None: no such file
    config_has_secret: bool
    menda_dir: Path
    menda_dir_mode: int | None
    cache_problem: str | None = None


def files_check(facts: FileFacts) -> Check:
    problems: list[tuple[str, str]] = []
    if facts.menda_dir_mode is not None and facts.menda_dir_mode & 0o022:
        problems.append(
            (f"{facts.menda_dir} is writable by others", f"chmod go-w {facts.menda_dir}")
        )
    if facts.config_mode is not None and facts.config_has_secret and facts.config_mode & 0o077:
        problems.append(
            (
                f"{facts.config} holds a client secret and is mode {facts.config_mode:04o}",
                f"chmod 600 {facts.config}",
            )
        )
    if facts.cache_problem:
        problems.append((facts.cache_problem, "see the message"))
    if problems:
        return Check(
            "files",
            False,
            "; ".join(p for p, _ in problems),
            "; ".join(f for _, f in problems),
        )
    mode = f"mode {facts.config_mode:04o}" if facts.config_mode is not None else "absent"
    return Check("files", True, f"{facts.config} {mode}; token cache folder private")


# -- 4. the token cache ----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheFacts:
    """The cache entry the identity would use (never its token)."""

    path: Path
    key: str
    present: bool
    matches: bool = False  # same host and auth type as the identity
    expires_at: float | None = None
    refreshable: bool = False  # a user entry with a refresh token
    unreadable: str | None = None


def token_cache_check(identity: Identity, facts: CacheFacts, now: float) -> Check:
    name = "token cache"
    entry = f"{facts.key} in {facts.path}"
    if facts.unreadable:
        return Check(name, False, facts.unreadable, "see the message")
    user = identity.auth_type == "u2m"
    login = "menda auth login" + (
        f" --profile {identity.profile}" if identity.profile not in (None, "default") else ""
    )
    if not facts.present or not facts.matches or facts.expires_at is None:
        what = "no entry" if not facts.present else "an entry for another host or auth type"
        if user:
            return Check(name, False, f"{what} {entry}: not signed in", login)
        return Check(name, True, f"{what} {entry}: one OAuth exchange will fetch a token")
    usable = facts.expires_at - now >= ACCESS_TOKEN_MARGIN
    expiry = when(facts.expires_at, now)
    refresh = " (refresh token present)" if facts.refreshable else ""
    if usable:
        return Check(name, True, f"{entry} valid until {expiry}{refresh}")
    if not user:
        return Check(name, True, f"{entry} expired {expiry}: a new one will be fetched")
    if facts.refreshable:
        return Check(name, True, f"{entry} expired {expiry}; it can be refreshed{refresh}")
    return Check(name, False, f"{entry} expired {expiry}, no refresh token: signed out", login)


# -- 5. the daemon, menda-cloud and the exchange ---------------------------------------------


@dataclass(frozen=True)
class DaemonFacts:
    """``state``: off, unsupported, absent, running, other-release, silent or untrusted."""

    socket: str
    state: str
    pid: int | None = None
    version: str | None = None
    detail: str = ""


def daemon_check(facts: DaemonFacts) -> Check:
    name = "daemon"
    if facts.state == "off":
        return Check(name, True, "MENDA_CREDD=off: every keyring call resolves in process")
    if facts.state == "unsupported":
        return Check(name, True, f"{facts.detail}: every keyring call resolves in process")
    if facts.state == "absent":
        return Check(
            name,
            True,
            f"not running (socket {facts.socket}): keyring resolves in process "
            "(menda-credd start makes one exchange serve every install)",
        )
    if facts.state == "running":
        detail = f", {facts.detail}" if facts.detail else ""
        return Check(
            name,
            True,
            f"running: menda-credd {facts.version} (pid {facts.pid}{detail}) at {facts.socket}",
        )
    if facts.state == "other-release":
        return Check(
            name,
            True,
            f"{facts.detail} at {facts.socket}: keyring resolves in process until you run "
            "menda-credd stop && menda-credd start",
        )
    if facts.state == "silent":
        return Check(
            name,
            False,
            f"pid {facts.pid} accepts on {facts.socket} but does not answer: each keyring "
            "call waits for it first",
            "menda-credd stop && menda-credd start",
        )
    return Check(
        name,
        False,
        facts.detail or f"{facts.socket} is not your daemon's",
        "remove that socket folder, or set MENDA_CREDD_SOCKET to a folder of yours",
    )


@dataclass(frozen=True)
class Exchange:
    """One real exchange for a domain: the error, or a token's expiry (never the token)."""

    target: RegistryTarget
    via: str  # "in process", or "menda-credd (pid N)"
    elapsed: float
    error: MendaError | None = None
    expires_at: float | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def reached_cloud(self) -> bool:
        """An HTTP answer came back (an error with a status, or a token)."""
        if self.error is None:
            return True
        return not (isinstance(self.error, MendaCloudAPIError) and self.error.status_code is None)


@dataclass(frozen=True)
class NetworkFacts:
    host: str
    proxy: str | None
    trust: str  # where TLS trust comes from


def domain_label(target: RegistryTarget) -> str:
    return f"{target.domain}-{target.owner} ({target.region})"


def cloud_checks(network: NetworkFacts, exchanges: Sequence[Exchange], now: float) -> list[Check]:
    """menda-cloud reachable (TLS, proxy), then each domain's exchange."""
    scheme = urlsplit(network.host).scheme
    tls = f"TLS verified against {network.trust}" if scheme == "https" else "plain http (loopback)"
    route = f"proxy {network.proxy}" if network.proxy else "no proxy"
    first = next((e for e in exchanges if not e.reached_cloud), None)
    if first is not None and not any(e.reached_cloud for e in exchanges):
        message = str(first.error)
        if "TLS" in message:
            fix = "trust menda-cloud's certificate: SSL_CERT_FILE, or the system trust store"
        elif "no answer" in message or "gave up" in message:
            fix = f"menda-cloud did not answer in time via {route}; check the network and proxy"
        else:
            fix = f"check the host, the network and HTTPS_PROXY/NO_PROXY ({route})"
        checks = [Check("menda-cloud", False, f"{network.host} via {first.via}: {message}", fix)]
        return checks + [
            skipped(f"exchange {domain_label(e.target)}", "menda-cloud unreachable")
            for e in exchanges
        ]
    via = exchanges[0].via if exchanges else "in process"
    checks = [Check("menda-cloud", True, f"{network.host} answered ({via}; {tls}; {route})")]
    return checks + [_exchange_check(e, now) for e in exchanges]


#: What to do when menda-cloud refuses an exchange, by HTTP status.
EXCHANGE_FIXES = {
    400: "menda-cloud refused the request; check the host and the CodeArtifact URL",
    401: "the Menda identity was refused: check client_id/client_secret, or menda auth login",
    403: "this identity may not use that domain: ask your Menda administrator for access",
    404: "no such CodeArtifact domain for your tenant: check the URL's domain and owner",
}


def _exchange_check(exchange: Exchange, now: float) -> Check:
    name = f"exchange {domain_label(exchange.target)}"
    if exchange.error is None:
        expiry = (
            f"valid until {when(exchange.expires_at, now)}" if exchange.expires_at else "issued"
        )
        return Check(name, True, f"token {expiry}, {exchange.via}, {exchange.elapsed:.2f} s")
    status = getattr(exchange.error, "status_code", None)
    if exchange.error.kind == "no_cached_login":
        fix = "menda auth login"
    else:
        fix = EXCHANGE_FIXES.get(status or 0, "menda-cloud is failing; try again later")
    return Check(name, False, f"{type(exchange.error).__name__}: {exchange.error}", fix)


# -- 6. the registry -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryAnswer:
    url: str  # as shown: without credentials
    target: RegistryTarget
    status: int | None
    elapsed: float
    error: str | None = None


def simple_index_url(url: str) -> str:
    """The URL to GET: no credentials, a scheme, and a trailing slash after ``/simple``."""
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    path = parts.path or "/"
    if path.endswith("/simple"):
        path += "/"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def registry_check(answer: RegistryAnswer) -> Check:
    name = f"registry {answer.url}"
    if answer.status is None:
        return Check(
            name,
            False,
            f"no answer: {answer.error}",
            "check the network and HTTPS_PROXY/NO_PROXY for the CodeArtifact host",
        )
    if answer.status < 400:
        return Check(name, True, f"HTTP {answer.status} in {answer.elapsed:.2f} s")
    if answer.status in (401, 403):
        return Check(
            name,
            False,
            f"HTTP {answer.status}: the index refused the token for {domain_label(answer.target)}",
            "check that this repository belongs to that domain and that your identity may read it",
        )
    return Check(
        name,
        False,
        f"HTTP {answer.status} for the simple index",
        "check the repository name and the path (…/pypi/<repository>/simple/)",
    )
