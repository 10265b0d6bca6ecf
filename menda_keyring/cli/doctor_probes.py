"""The thin I/O edges of ``menda-keyring doctor``: each probe gathers facts, decides nothing.

Every probe is bounded: subprocesses and network calls carry a timeout, the exchange runs
the product's own flow (through the daemon when one answers, as the shim does) under a
short ceiling. Secrets met on the way (tokens, client secrets) are returned to the caller
only so it can blank them out of anything it prints.
"""

from __future__ import annotations

import base64
import configparser
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .. import __version__, token_cache
from ..cloud_protocol import USER_AGENT, HttpRequest
from ..daemon_client import DaemonUnavailable, DaemonUntrusted
from ..errors import ConfigError, MendaError
from ..identity import Identity, is_loopback_host, read_config, resolve_identity
from ..osfeatures import daemon_unsupported
from ..paths import config_path, menda_dir, socket_path, token_cache_path
from ..urls import CODEARTIFACT_USERNAME, RegistryTarget
from .doctor_checks import (
    CacheFacts,
    DaemonFacts,
    Exchange,
    FileFacts,
    KeyringFacts,
    NetworkFacts,
    RegistryAnswer,
    parse_backend_list,
)

#: ``keyring`` starts in well under a second; this bounds a wedged one on a loaded machine.
KEYRING_TIMEOUT = 15.0
_SH_EXEC = re.compile(rb"""exec'?\s+'?"?(?P<python>/[^"'\s]+)""")


# -- 1. keyring ----------------------------------------------------------------------------


def interpreter_of(script: str) -> str | None:
    """The Python a console script runs with, from its first lines (``#!`` or uv's sh trick)."""
    try:
        with open(os.path.realpath(script), "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    first = head[2:].split(b"\n", 1)[0].strip()
    if first.endswith(b"/sh") or first.endswith(b" sh"):
        match = _SH_EXEC.search(head)
        return match["python"].decode(errors="replace") if match else None
    return first.split()[0].decode(errors="replace") if first else None


def _run(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=KEYRING_TIMEOUT,
        check=False,
    )


def probe_keyring(env: Mapping[str, str]) -> KeyringFacts:
    """The first ``keyring`` on PATH: its Python, its backends, its configured backend."""
    env_backend = env.get("PYTHON_KEYRING_BACKEND") or None
    path = shutil.which("keyring", path=env.get("PATH", os.defpath))
    if path is None:
        return KeyringFacts(None, env_backend=env_backend)
    interpreter = interpreter_of(path)
    try:
        listed = _run([path, "--list-backends"], env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return KeyringFacts(path, interpreter, None, _short(exc), env_backend)
    if listed.returncode != 0:
        error = (listed.stderr.strip().splitlines() or [f"exit status {listed.returncode}"])[-1]
        return KeyringFacts(path, interpreter, None, error, env_backend)
    config, config_backend = _keyring_config(path, env)
    return KeyringFacts(
        path,
        interpreter,
        parse_backend_list(listed.stdout),
        None,
        env_backend,
        config,
        config_backend,
    )


def _short(exc: BaseException) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"no answer within {KEYRING_TIMEOUT:.0f} s"
    return getattr(exc, "strerror", None) or type(exc).__name__


def _keyring_config(path: str, env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """keyringrc.cfg where that keyring looks for it (``keyring diagnose``), and its backend."""
    try:
        diagnosed = _run([path, "diagnose"], env)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    found = None
    for line in diagnosed.stdout.splitlines():
        if line.startswith("config path:"):
            found = line.partition(":")[2].strip().removesuffix("(absent)").strip()
    if not found:
        return None, None
    parser = configparser.RawConfigParser()
    try:
        parser.read(found, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return found, None
    if parser.has_option("backend", "default-keyring"):
        return found, parser.get("backend", "default-keyring").strip() or None
    return found, None


# -- 3. identity and files -------------------------------------------------------------------


def probe_identity(env: Mapping[str, str], home: Path) -> tuple[Identity | None, MendaError | None]:
    """The identity a ``keyring get`` here would use, or the typed error it would raise."""
    try:
        return resolve_identity(env, home), None
    except MendaError as exc:
        return None, exc


def _mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode & 0o7777
    except OSError:
        return None


def probe_files(home: Path, identity: Identity | None) -> FileFacts:
    config = config_path(home)
    has_secret = False
    if identity is None or identity.source != "env":
        try:
            parser = read_config(config)
            has_secret = any(parser.has_option(s, "client_secret") for s in parser.sections())
        except MendaError:
            pass
    problem = None
    try:
        token_cache.check_cache_folder(token_cache_path(home).parent)
    except ConfigError as exc:
        problem = str(exc)
    return FileFacts(
        config, _mode(config), has_secret, menda_dir(home), _mode(menda_dir(home)), problem
    )


# -- 4. the token cache ----------------------------------------------------------------------


def probe_cache(identity: Identity, home: Path) -> tuple[CacheFacts, tuple[str, ...]]:
    """The identity's cache entry as facts, and the secrets in it (to blank from output)."""
    path = token_cache_path(home)
    try:
        snapshot = token_cache.read_snapshot(path)
    except ConfigError as exc:
        return CacheFacts(path, identity.cache_key, False, unreadable=str(exc)), ()
    if snapshot.corrupt:
        note = f"{path} is not a valid token cache (a new login or exchange rewrites it)"
        return CacheFacts(path, identity.cache_key, False, unreadable=note), ()
    entry = snapshot.tokens.get(identity.cache_key)
    token = token_cache.entry_to_token(entry, identity)
    secrets: tuple[str, ...] = ()
    refreshable = False
    if isinstance(entry, dict):
        found = (entry.get("access_token"), entry.get("refresh_token"))
        secrets = tuple(s for s in found if isinstance(s, str) and s)
        refreshable = isinstance(entry.get("refresh_token"), str) and bool(entry["refresh_token"])
    facts = CacheFacts(
        path,
        identity.cache_key,
        present=entry is not None,
        matches=token is not None,
        expires_at=token.expires_at if token is not None else None,
        refreshable=refreshable,
    )
    return facts, secrets


# -- 5. the daemon, menda-cloud and the exchange ---------------------------------------------

_OFF = ("off", "0", "false", "no")


def daemon_disabled(env: Mapping[str, str]) -> bool:
    return env.get("MENDA_CREDD", "").strip().lower() in _OFF


def probe_daemon(env: Mapping[str, str], timeout: float) -> DaemonFacts:
    """Who answers on the daemon socket (a checked connection and a ping, as ``status``)."""
    path = socket_path(env)
    if daemon_disabled(env):
        return DaemonFacts(path, "off")
    unsupported = daemon_unsupported()
    if unsupported is not None:  # Windows: no daemon to ask (and none of its modules)
        return DaemonFacts(path, "unsupported", detail=unsupported)
    from menda_credd import runtime  # the daemon's own probe, so both say the same

    try:
        probe = runtime.probe_daemon(path, timeout)
    except DaemonUntrusted as exc:
        return DaemonFacts(path, "untrusted", detail=exc.reason)
    if probe is None:
        return DaemonFacts(path, "absent")
    if not probe.answered:
        return DaemonFacts(path, "silent", pid=probe.peer.pid)
    other = probe.other_release(__version__)
    if other is not None:
        return DaemonFacts(path, "other-release", probe.peer.pid, probe.version, other)
    detail = ""
    try:
        status = runtime.status(path, timeout)
        entries = status.get("summary", {}).get("entries", len(status.get("entries", [])))
        detail = f"up {float(status.get('uptime', 0)):.0f} s, {entries} tokens in memory"
    except (DaemonUnavailable, AttributeError, TypeError, ValueError):
        pass
    return DaemonFacts(path, "running", probe.reported_pid, probe.version, detail)


def network_facts(host: str, env: Mapping[str, str]) -> NetworkFacts:
    """Which proxy urllib will use for ``host`` (none for loopback) and whose TLS trust."""
    parts = urlsplit(host)
    hostname = (parts.hostname or "").lower()
    scheme = parts.scheme or "https"
    proxy = None
    if not is_loopback_host(hostname) and not _bypassed(hostname, _env_value(env, "no_proxy")):
        proxy = _env_value(env, f"{scheme}_proxy")
    trust = ", ".join(
        f"{var}={env[var]}" for var in ("SSL_CERT_FILE", "SSL_CERT_DIR") if env.get(var)
    )
    return NetworkFacts(host, _hide_userinfo(proxy), trust or "the system trust store")


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    """A proxy variable as urllib reads it: the lower-case name first."""
    return env.get(name) or env.get(name.upper()) or None


def _bypassed(hostname: str, no_proxy: str | None) -> bool:
    """``NO_PROXY``: ``*``, or a host or domain suffix in its comma-separated list."""
    for entry in (no_proxy or "").replace(" ", "").lower().split(","):
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if name == "*" or (
            name and (hostname == name.lstrip(".") or hostname.endswith("." + name.lstrip(".")))
        ):
            return True
    return False


def _hide_userinfo(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.username is None:
        return url
    return url.replace(parts.netloc, f"***@{parts.netloc.rpartition('@')[2]}")


def exchange(
    service: str, target: RegistryTarget, env: Mapping[str, str], timeout: float, daemon: bool
) -> Exchange:
    """One real exchange for ``target``: through the daemon when it answers, else in process.

    The ceiling is ``timeout`` seconds whatever ``MENDA_KEYRING_TIMEOUT`` says, so a hanging
    menda-cloud costs doctor that long and no more.
    """
    bounded = {**env, "MENDA_KEYRING_TIMEOUT": f"{timeout:g}"}
    start = time.monotonic()
    if daemon and not daemon_disabled(env):
        from ..shim import from_daemon

        try:
            token = from_daemon(service, bounded)
        except DaemonUnavailable:
            pass
        except MendaError as exc:
            return Exchange(target, "through menda-credd", time.monotonic() - start, exc)
        else:
            return Exchange(target, "through menda-credd", time.monotonic() - start, token=token)
    from ..in_process import InProcessResolver

    try:
        result = InProcessResolver(bounded).resolve(target)
    except MendaError as exc:
        return Exchange(target, "in process", time.monotonic() - start, exc)
    elapsed = time.monotonic() - start
    return Exchange(target, "in process", elapsed, expires_at=result.expires_at, token=result.token)


# -- 6. the registry -------------------------------------------------------------------------


def get_simple_index(
    url: str, target: RegistryTarget, token: str, timeout: float
) -> RegistryAnswer:
    """One authenticated GET of a simple index URL (``url`` has no credentials)."""
    from ..http_sync import send

    basic = base64.b64encode(f"{CODEARTIFACT_USERNAME}:{token}".encode()).decode("ascii")
    headers = {"Authorization": f"Basic {basic}", "User-Agent": USER_AGENT, "Accept": "text/html"}
    request = HttpRequest("GET", url, headers, b"", "simple index", (token,))
    start = time.monotonic()
    try:
        response = send(request, timeout)
    except MendaError as exc:
        # http_sync words its failures for menda-cloud; here the peer is the index.
        message = str(exc).replace(f"menda-cloud {url}: ", "")
        return RegistryAnswer(url, target, None, time.monotonic() - start, message)
    return RegistryAnswer(url, target, response.status, time.monotonic() - start)
