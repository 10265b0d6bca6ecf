"""``menda-keyring doctor [URL]``: the chain uv and pip take, checked link by link.

Gathers facts with the probes (``doctor_probes``), judges them with plain functions
(``doctor_checks``) and prints one line per link: what it found and, when broken, what to
do. Exit status 0 when every link holds, 1 otherwise. Links after a broken one are
skipped rather than failed. Every secret met on the way is blanked from the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .. import __version__
from ..errors import ConfigError, redacted_text
from ..identity import ENV_CLIENT_SECRET, home_from_env
from ..urls import RegistryTarget, parse_codeartifact_service
from . import doctor_checks as checks
from . import doctor_probes as probes
from .doctor_checks import Check
from .project_indexes import find_indexes, pip_keyring_provider, uv_keyring_provider

#: Seconds for each network step (the exchange, each GET, the daemon's answer).
DEFAULT_TIMEOUT = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        metavar="URL",
        help="a CodeArtifact index URL to check (default: those the project's uv/pip config names)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document for scripts")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds for each network step (default {DEFAULT_TIMEOUT:g})",
    )


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    #: Everything that must never be printed (blanked out of every line).
    secrets: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def redacted(self) -> list[Check]:
        hidden = tuple(self.secrets)
        return [
            Check(c.name, c.ok, redacted_text(c.found, hidden), redacted_text(c.fix, hidden))
            for c in self.checks
        ]


def run(args: argparse.Namespace) -> int:
    timeout = min(max(float(args.timeout), 0.5), 120.0)
    report = diagnose(os.environ, Path.cwd(), args.url, timeout)
    shown = report.redacted()
    if args.json:
        print(json.dumps({"ok": report.ok, "checks": [c.as_dict() for c in shown]}, indent=1))
    else:
        print(render(shown))
    return 0 if report.ok else 1


STATUS_WORD = {True: "ok", False: "FAIL", None: "skip"}


def render(results: Sequence[Check]) -> str:
    """One line per check, then one line saying which links broke."""
    lines = [f"menda-keyring doctor {__version__}"]
    for c in results:
        line = f"{STATUS_WORD[c.ok]:<4}  {c.name}: {c.found}"
        if c.ok is False and c.fix:
            line += f"  -> {c.fix}"
        lines.append(line)
    broken = [c.name for c in results if c.ok is False]
    lines.append(f"{len(broken)} broken: {', '.join(broken)}" if broken else "every link holds")
    return "\n".join(lines)


def _url_secret(url: str) -> str | None:
    try:
        return urlsplit(url if "://" in url else "https://" + url).password
    except ValueError:
        return None


def diagnose(env: Mapping[str, str], cwd: Path, url: str | None, timeout: float) -> Report:
    """Every check, in the order uv and pip meet the links."""
    report = Report()
    report.secrets.update(s for s in (env.get(ENV_CLIENT_SECRET), _url_secret(url or "")) if s)
    add = report.checks.extend

    # 1. the keyring executable uv and pip run
    add(checks.keyring_checks(probes.probe_keyring(env)))

    # 2. the project's installer configuration
    try:
        indexes = find_indexes(cwd, env)
        providers = uv_keyring_provider(cwd, env), pip_keyring_provider(env)
    except ConfigError as exc:  # a file uv or pip would refuse too
        indexes = []
        add([Check("indexes", False, str(exc), "fix that file, or run doctor elsewhere")])
    else:
        report.secrets.update(s for s in (_url_secret(i.url) for i in indexes) if s)
        add(checks.project_checks(indexes, *providers, cwd))
    services: list[str] = []
    if url is not None:
        if parse_codeartifact_service(url) is None:
            add(
                [
                    Check(
                        "URL",
                        False,
                        f"{checks.display_url(url)} is not a CodeArtifact URL",
                        "give a URL such as https://<domain>-<owner>.d.codeartifact.<region>"
                        ".amazonaws.com/pypi/<repository>/simple/",
                    )
                ]
            )
        else:
            services.append(url)
    services += [i.url for i in indexes if checks.is_codeartifact(i)]

    # 3. identity and files
    home = home_from_env(env)
    identity, error = probes.probe_identity(env, home)
    if identity is not None and identity.client_secret:
        report.secrets.add(identity.client_secret)
    config = home / ".menda" / "mendacfg"
    add([checks.identity_check(identity, error, [k for k, v in env.items() if v], config)])
    files = checks.files_check(probes.probe_files(home, identity))
    add([files])

    # 4. the token cache
    blocked: str | None = None
    if identity is None:
        blocked = "no identity"
        add([checks.skipped("token cache", blocked)])
    else:
        cache, cached_secrets = probes.probe_cache(identity, home)
        report.secrets.update(cached_secrets)
        if cache.unreadable and files.ok is False:
            add([checks.skipped("token cache", "its folder is not trusted (see files)")])
            blocked = "the token cache is not usable"
        else:
            verdict = checks.token_cache_check(identity, cache, time.time())
            add([verdict])
            if verdict.ok is False:
                blocked = "the token cache has no usable login"

    # 5. the daemon, menda-cloud, the exchange for each domain
    daemon = probes.probe_daemon(env, timeout)
    add([checks.daemon_check(daemon)])
    targets = _targets(services)
    if blocked is not None or identity is None:
        add([checks.skipped("menda-cloud", blocked or "no identity")])
        add(
            [
                checks.skipped(f"registry {checks.simple_index_url(s)}", blocked or "")
                for s in _distinct_urls(services)
            ]
        )
        return report
    if not targets:
        add(
            [
                checks.skipped(
                    "menda-cloud",
                    "no CodeArtifact URL to exchange a token for: give "
                    "one (menda-keyring doctor URL) or run this in your project",
                )
            ]
        )
        return report
    exchanges = [
        probes.exchange(service, target, env, timeout, daemon.state == "running")
        for target, service in targets.items()
    ]
    report.secrets.update(e.token for e in exchanges if e.token)
    now = time.time()
    add(checks.cloud_checks(probes.network_facts(identity.host, env), exchanges, now))

    # 6. the registry accepts the token
    by_target = {e.target: e for e in exchanges}
    for service in _distinct_urls(services):
        simple = checks.simple_index_url(service)
        target = parse_codeartifact_service(service)
        done = by_target.get(target) if target is not None else None
        if done is None or done.token is None or target is None:
            add([checks.skipped(f"registry {simple}", "no token for its domain")])
            continue
        answer = probes.get_simple_index(simple, target, done.token, timeout)
        add([checks.registry_check(answer)])
    return report


def _targets(services: Sequence[str]) -> dict[RegistryTarget, str]:
    """One service string per CodeArtifact domain: one token serves all its repositories."""
    out: dict[RegistryTarget, str] = {}
    for service in services:
        target = parse_codeartifact_service(service)
        if target is not None:
            out.setdefault(target, service)
    return out


def _distinct_urls(services: Sequence[str]) -> list[str]:
    seen: dict[str, str] = {}
    for service in services:
        seen.setdefault(checks.simple_index_url(service), service)
    return list(seen.values())


if __name__ == "__main__":  # pragma: no cover - python -m menda_keyring.cli.doctor
    sys.exit(run(argparse.Namespace(url=None, json=False, timeout=DEFAULT_TIMEOUT)))
