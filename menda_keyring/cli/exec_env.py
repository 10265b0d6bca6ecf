"""What ``menda-keyring exec`` puts in its command's environment, decided without I/O.

Every CodeArtifact index gets its token through the variable its tool reads:

* a named uv index (``[[tool.uv.index]]`` with ``name``, or ``--index NAME=URL``):
  ``UV_INDEX_<NAME>_USERNAME``/``_PASSWORD``, ``<NAME>`` as uv derives it;
* an index held by a URL variable (``UV_INDEX_URL``, ``UV_INDEX``, ``PIP_INDEX_URL``, ...):
  the same variable, its CodeArtifact URLs rewritten with ``aws:<token>@``;
* a file's ``index-url`` (uv's or pip's): the variable that overrides it with the same URL
  (``UV_INDEX_URL``, ``PIP_INDEX_URL``; pip's ``extra-index-url`` as ``PIP_EXTRA_INDEX_URL``);
* the one upload ``--index`` (a URL not ending in ``/simple/``): ``UV_PUBLISH_*`` and
  ``TWINE_*`` (the URL too, unless already set).

Anything else (an unnamed ``[[tool.uv.index]]``, uv's ``extra-index-url`` in a file, whose
variables add to the file's list rather than replace it) has no carrier: an
:class:`IndexCredentialsError` names it before the command runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import IndexCredentialsError, NotCodeArtifactError
from ..records import Record
from ..urls import CODEARTIFACT_USERNAME, RegistryTarget, parse_codeartifact_service
from .project_indexes import LIST_VARIABLES, IndexRef, split_named, url_username, uv_env_name

#: Where a token goes: ("named", NAME), ("variable", VARIABLE) or ("publish", "").
Carrier = tuple[str, str]
_FILE_VARIABLES = {
    ("uv", "index-url"): "UV_INDEX_URL",
    ("pip", "index-url"): "PIP_INDEX_URL",
    ("pip", "extra-index-url"): "PIP_EXTRA_INDEX_URL",
}
_NAMED_VARIABLES = ("UV_INDEX", "UV_DEFAULT_INDEX")


class Need(Record):
    """A CodeArtifact index, the domain whose token it needs, and what would carry it."""

    __slots__ = ("carrier", "ref", "target")
    ref: IndexRef
    target: RegistryTarget
    carrier: Carrier | None

    def __init__(self, ref: IndexRef, target: RegistryTarget, carrier: Carrier | None) -> None:
        self._set(ref=ref, target=target, carrier=carrier)


def cli_indexes(values: Sequence[str]) -> list[IndexRef]:
    """``--index [NAME=]URL`` options as index references; each must be CodeArtifact."""
    refs = []
    for value in values:
        name, url = split_named(value)
        if parse_codeartifact_service(url) is None:
            raise NotCodeArtifactError(
                f"--index {bare_url(url)} is not a CodeArtifact URL "
                "({domain}-{owner}.d.codeartifact.{region}.amazonaws.com/...)"
            )
        refs.append(IndexRef(name, url, "--index", url_username(url), None, "cli", "--index"))
    return refs


def is_upload_url(url: str) -> bool:
    """CodeArtifact uploads go to ``.../pypi/REPO/``; installs read ``.../pypi/REPO/simple/``."""
    return not urlsplit(url).path.rstrip("/").endswith("/simple")


def carrier_of(ref: IndexRef) -> Carrier | None:
    """The variable(s) that can hand ``ref`` its credentials, or None when none can."""
    if ref.tool == "cli":
        if ref.name:
            return ("named", uv_env_name(ref.name))
        return ("publish", "") if is_upload_url(ref.url) else None
    if ref.from_environment:
        return ("variable", ref.setting)
    if ref.setting in ("index", "publish-url"):
        return ("named", uv_env_name(ref.name)) if ref.name else None
    variable = _FILE_VARIABLES.get((ref.tool, ref.setting))
    return ("variable", variable) if variable else None


def needs_of(refs: Iterable[IndexRef]) -> list[Need]:
    """The CodeArtifact indexes among ``refs`` (the others need nothing from us)."""
    needs = []
    for ref in refs:
        target = parse_codeartifact_service(ref.url)
        if target is not None:
            needs.append(Need(ref, target, carrier_of(ref)))
    return needs


def carrier_problems(needs: Sequence[Need]) -> list[str]:
    """One message per index that exec could not pass credentials to, whatever the token."""
    problems = []
    for need in needs:
        if need.carrier is not None:
            continue
        if need.ref.tool == "cli":
            how = "give it a name (--index NAME=URL) so that UV_INDEX_<NAME>_PASSWORD carries it"
        elif need.ref.setting == "extra-index-url":
            how = "declare it as a named [[tool.uv.index]] instead"
        else:
            how = "give it a name (name = ...) so that UV_INDEX_<NAME>_PASSWORD carries it"
        problems.append(f"no variable can carry credentials for {describe(need.ref)}: {how}")
    uploads = [n for n in needs if n.carrier == ("publish", "")]
    if len(uploads) > 1:
        problems.append(
            "more than one upload --index ("
            + ", ".join(bare_url(n.ref.url) for n in uploads)
            + "): UV_PUBLISH_* and TWINE_* hold one; name the others (--index NAME=URL)"
        )
    return problems


def targets_of(needs: Iterable[Need]) -> dict[RegistryTarget, str]:
    """One service URL per CodeArtifact domain: one token serves all its repositories."""
    targets: dict[RegistryTarget, str] = {}
    for need in needs:
        if need.carrier is not None:
            targets.setdefault(need.target, bare_url(need.ref.url))
    return targets


def child_env(
    env: Mapping[str, str],
    refs: Sequence[IndexRef],
    tokens: Mapping[RegistryTarget, str],
) -> dict[str, str]:
    """``env`` plus the credentials of every index whose domain has a token in ``tokens``.

    ``refs`` are all the indexes found (CodeArtifact or not): a variable that is rewritten
    keeps its other URLs. An index without a token is left as it was.
    """
    out = dict(env)
    named: dict[str, tuple[str, IndexRef]] = {}
    by_variable: dict[str, list[IndexRef]] = {}
    for ref in refs:
        carrier = carrier_of(ref)
        if carrier is not None and carrier[0] == "variable":
            by_variable.setdefault(carrier[1], []).append(ref)
    for need in needs_of(refs):
        token = tokens.get(need.target)
        if token is None or need.carrier is None:
            continue
        kind, name = need.carrier
        if kind == "named":
            seen = named.get(name)
            if seen is not None and seen[0] != token:
                raise IndexCredentialsError(
                    f"{describe(seen[1])} and {describe(need.ref)} both read "
                    f"UV_INDEX_{name}_PASSWORD but are in different CodeArtifact domains; "
                    "rename one"
                )
            named[name] = (token, need.ref)
            out[f"UV_INDEX_{name}_USERNAME"] = CODEARTIFACT_USERNAME
            out[f"UV_INDEX_{name}_PASSWORD"] = token
        elif kind == "publish":
            for tool in ("UV_PUBLISH", "TWINE"):
                out[f"{tool}_USERNAME"] = CODEARTIFACT_USERNAME
                out[f"{tool}_PASSWORD"] = token
            url = bare_url(need.ref.url)
            out.setdefault("UV_PUBLISH_URL", url)
            out.setdefault("TWINE_REPOSITORY_URL", url)
    for variable, members in by_variable.items():
        value = _variable_value(variable, members, tokens)
        if value is not None:
            out[variable] = value
    return out


def _variable_value(
    variable: str, members: Sequence[IndexRef], tokens: Mapping[RegistryTarget, str]
) -> str | None:
    """The variable's new value, or None when none of its URLs got a token."""
    if variable not in LIST_VARIABLES:
        members = members[:1]  # a single-URL setting: the most specific file won
    changed = False
    items = []
    for ref in members:
        target = parse_codeartifact_service(ref.url)
        token = tokens.get(target) if target is not None else None
        url = ref.url if token is None else with_token(ref.url, token)
        changed = changed or token is not None
        prefix = f"{ref.name}=" if ref.name and ref.setting in _NAMED_VARIABLES else ""
        items.append(prefix + url)
    return " ".join(items) if changed else None


def with_token(url: str, token: str) -> str:
    """``url`` with ``aws:<token>@`` as its user information (any other replaced)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{CODEARTIFACT_USERNAME}:{quote(token, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


def bare_url(url: str) -> str:
    """``url`` without user information: what messages show and the daemon is asked about."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def describe(ref: IndexRef) -> str:
    """An index as messages name it: its name or URL, and where it was found."""
    what = f"index {ref.name!r}" if ref.name else f"index {bare_url(ref.url)}"
    return f"{what} ({ref.source})"
