"""Which package indexes uv and pip would use here: uv's and pip's configuration, read as they do.

``menda-keyring exec`` gives each CodeArtifact index among them a token, and ``doctor``
reports on them. Parsing and precedence are plain functions over text and mappings; the
only I/O is :func:`_read_text` (and the ``is_file`` probes of uv's upward search).

What is read, following uv 0.13 and pip 26:

* uv: the nearest folder from ``cwd`` upwards with a ``uv.toml`` (preferred) or a
  ``pyproject.toml`` that has a ``[tool.uv]`` table; then the user's
  ``$XDG_CONFIG_HOME/uv/uv.toml`` (``~/.config/uv/uv.toml``) and the system's
  ``uv/uv.toml`` in ``$XDG_CONFIG_DIRS`` (``/etc/uv/uv.toml``). ``UV_CONFIG_FILE``
  replaces all of them, ``UV_NO_CONFIG`` reads none. From each: ``[[index]]`` (or
  ``[[tool.uv.index]]``), ``index-url``/``extra-index-url`` at the top and under ``[pip]``,
  and ``keyring-provider``. Then ``UV_DEFAULT_INDEX``, ``UV_INDEX`` (``[NAME=]URL`` each),
  ``UV_INDEX_URL`` and ``UV_EXTRA_INDEX_URL``.
* pip: the files pip loads (``PIP_CONFIG_FILE`` set to ``os.devnull`` loads none),
  sections ``[global]`` then ``[install]``, keys ``index-url``/``extra-index-url``/
  ``keyring-provider``; a ``PIP_*`` variable overrides every file, as in pip.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..fileutil import read_regular_file
from ..records import Record

#: Sources of URLs held in environment variables, in the order uv and pip read them.
UV_URL_VARIABLES = ("UV_DEFAULT_INDEX", "UV_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL")
PIP_URL_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
#: Variables whose value is a whitespace-separated list of URLs (the others hold one).
LIST_VARIABLES = frozenset({"UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"})
_FALSE = ("", "0", "false", "no", "off")


class IndexRef(Record):
    """One index an installer would use: its uv name (if any), URL and where it was found.

    ``username`` is the one in the URL (``aws@``); ``authenticate`` is uv's setting of a
    ``[[tool.uv.index]]`` (``always``, ``auto``, ``never``), None elsewhere. ``tool`` and
    ``setting`` say what carries it, for a caller that must pass credentials the same way:
    ``uv`` or ``pip``, and ``index``/``publish-url``/``index-url``/``extra-index-url`` in a
    file, or the environment variable's name. ``repr`` leaves the URL out (it may hold a
    password). A :class:`Record`, not a dataclass: ``dataclasses`` costs ``exec`` 15 ms.
    """

    __slots__ = ("authenticate", "name", "setting", "source", "tool", "url", "username")
    _hidden = ("url",)
    name: str | None
    url: str
    source: str
    username: str | None
    authenticate: str | None
    tool: str
    setting: str

    def __init__(
        self,
        name: str | None,
        url: str,
        source: str,
        username: str | None = None,
        authenticate: str | None = None,
        tool: str = "uv",
        setting: str = "",
    ) -> None:
        self._set(
            name=name,
            url=url,
            source=source,
            username=username,
            authenticate=authenticate,
            tool=tool,
            setting=setting,
        )

    @property
    def from_environment(self) -> bool:
        """Set by a variable (its URL is rewritten in place), not by a file."""
        return self.setting == self.source

    @property
    def env_name(self) -> str | None:
        """The ``<NAME>`` of ``UV_INDEX_<NAME>_PASSWORD`` for a named index."""
        return uv_env_name(self.name) if self.name else None


def uv_env_name(name: str) -> str:
    """uv's ``IndexName::to_env_var``: ASCII letters and digits upper-cased, all else ``_``."""
    return "".join(c.upper() if c.isascii() and c.isalnum() else "_" for c in name)


def split_named(value: str) -> tuple[str | None, str]:
    """``NAME=URL`` as uv's ``--index`` reads it (a name before ``=``, none when the part
    before it contains ``/`` or ``:``, as in a query string); plain ``URL`` has no name."""
    name, sep, url = value.partition("=")
    if sep and name and not any(c in name for c in "/:") and "://" in url:
        return name, url
    return None, value


def url_username(url: str) -> str | None:
    """The user name in ``url``'s authority, if any."""
    try:
        return urlsplit(url).username or None
    except ValueError:
        return None


# --- uv -----------------------------------------------------------------------------------


def uv_options(document: Mapping[str, Any], is_pyproject: bool) -> Mapping[str, Any] | None:
    """The uv settings table of a parsed file: ``[tool.uv]`` of a pyproject, else the top."""
    if not is_pyproject:
        return document
    tool = document.get("tool")
    uv = tool.get("uv") if isinstance(tool, Mapping) else None
    return uv if isinstance(uv, Mapping) else None


def indexes_from_uv_options(
    options: Mapping[str, Any], path: str, table: str = ""
) -> list[IndexRef]:
    """Every index one uv settings table declares: ``table`` is ``tool.uv`` in a
    pyproject, empty in a ``uv.toml`` (sources read ``pyproject.toml [[tool.uv.index]]``)."""
    prefix = f"{table}." if table else ""
    found: list[IndexRef] = []
    entries = options.get("index")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("url"), str):
            continue
        name = entry.get("name") if isinstance(entry.get("name"), str) else None
        auth = entry.get("authenticate")
        auth = auth if isinstance(auth, str) else None
        for key in ("url", "publish-url"):
            url = entry.get(key)
            if isinstance(url, str):
                where = f"{path} [[{prefix}index]]" + (" publish-url" if key != "url" else "")
                setting = "index" if key == "url" else key
                found.append(IndexRef(name, url, where, url_username(url), auth, "uv", setting))
    for sub in ("", "pip"):
        settings = options.get(sub) if sub else options
        if not isinstance(settings, Mapping):
            continue
        section = ".".join(part for part in (table, sub) if part)
        for key in ("index-url", "extra-index-url"):
            values = settings.get(key)
            for url in [values] if isinstance(values, str) else values or []:
                if isinstance(url, str):
                    where = f"{path} [{section}] {key}" if section else f"{path} {key}"
                    found.append(IndexRef(None, url, where, url_username(url), None, "uv", key))
    return found


def indexes_from_uv_env(env: Mapping[str, str]) -> list[IndexRef]:
    """The indexes uv's environment variables name (``UV_INDEX`` entries may be ``NAME=URL``)."""
    found: list[IndexRef] = []
    for variable in UV_URL_VARIABLES:
        for item in env_urls(env, variable):
            name, url = (
                split_named(item) if variable in ("UV_INDEX", "UV_DEFAULT_INDEX") else (None, item)
            )
            found.append(IndexRef(name, url, variable, url_username(url), None, "uv", variable))
    return found


def env_urls(env: Mapping[str, str], variable: str) -> list[str]:
    """The URLs one variable holds: split on whitespace for list variables."""
    value = env.get(variable, "").strip()
    if not value:
        return []
    return value.split() if variable in LIST_VARIABLES else [value]


def uv_config_files(cwd: Path, env: Mapping[str, str]) -> list[tuple[Path, bool]]:
    """(path, is_pyproject) of each uv file that applies, most specific first."""
    if env.get("UV_NO_CONFIG", "").strip().lower() not in _FALSE:
        return []
    explicit = env.get("UV_CONFIG_FILE")
    if explicit:
        return [(Path(explicit), False)]
    files: list[tuple[Path, bool]] = []
    project = _nearest_uv_project_file(cwd)
    if project is not None:
        files.append(project)
    files.extend((path, False) for path in _user_and_system_uv_files(env))
    return files


def _nearest_uv_project_file(cwd: Path) -> tuple[Path, bool] | None:
    for folder in (cwd, *cwd.parents):
        uv_toml = folder / "uv.toml"
        if uv_toml.is_file():
            return uv_toml, False
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and uv_options(_load_toml(pyproject), True) is not None:
            return pyproject, True
    return None


def _user_and_system_uv_files(env: Mapping[str, str]) -> list[Path]:
    home = env.get("HOME") or os.path.expanduser("~")
    user_root = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = [Path(user_root, "uv", "uv.toml")]
    system_roots = [p for p in env.get("XDG_CONFIG_DIRS", "").split(":") if p] or ["/etc/xdg"]
    system = [Path(root, "uv", "uv.toml") for root in system_roots] + [Path("/etc/uv/uv.toml")]
    first_system = next((path for path in system if path.is_file()), None)
    return [path for path in (*files, first_system) if path is not None and path.is_file()]


def uv_indexes(cwd: Path, env: Mapping[str, str]) -> list[IndexRef]:
    """Every index of uv's files and variables that uv would still use (env overrides files'
    ``index-url``, as a command-line option would)."""
    found: list[IndexRef] = []
    for path, is_pyproject in uv_config_files(cwd, env):
        options = uv_options(_load_toml(path), is_pyproject)
        if options is not None:
            table = "tool.uv" if is_pyproject else ""
            found.extend(indexes_from_uv_options(options, str(path), table))
    if env.get("UV_INDEX_URL", "").strip() or env.get("UV_DEFAULT_INDEX", "").strip():
        found = [ref for ref in found if ref.setting != "index-url"]
    return [with_env_username(ref, env) for ref in found + indexes_from_uv_env(env)]


def with_env_username(ref: IndexRef, env: Mapping[str, str]) -> IndexRef:
    """A named index without a user name in its URL takes ``UV_INDEX_<NAME>_USERNAME``, as
    uv does when it asks keyring."""
    if ref.username is not None or ref.env_name is None:
        return ref
    username = env.get(f"UV_INDEX_{ref.env_name}_USERNAME") or None
    if username is None:
        return ref
    return IndexRef(
        ref.name, ref.url, ref.source, username, ref.authenticate, ref.tool, ref.setting
    )


def uv_keyring_provider(cwd: Path, env: Mapping[str, str]) -> str | None:
    """``keyring-provider`` as uv would take it: ``UV_KEYRING_PROVIDER``, else the files'."""
    value = env.get("UV_KEYRING_PROVIDER", "").strip()
    if value:
        return value
    for path, is_pyproject in uv_config_files(cwd, env):
        options = uv_options(_load_toml(path), is_pyproject)
        if options is None:
            continue
        pip = options.get("pip")
        for table in (options, pip if isinstance(pip, Mapping) else {}):
            provider = table.get("keyring-provider")
            if isinstance(provider, str):
                return provider
    return None


# --- pip ----------------------------------------------------------------------------------


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """The files pip loads, lowest precedence first (pip's ``iter_config_files`` order)."""
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return []
    home = env.get("HOME") or os.path.expanduser("~")
    system_roots = [p for p in env.get("XDG_CONFIG_DIRS", "").split(":") if p] or ["/etc/xdg"]
    files = [Path(root, "pip", "pip.conf") for root in system_roots] + [Path("/etc/pip.conf")]
    if not (explicit and os.path.exists(explicit)):
        if sys.platform == "darwin":  # pip's user folder there (platformdirs)
            user_dir = Path(home, "Library", "Application Support", "pip")
        else:
            user_dir = Path(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "pip")
        files += [Path(home, ".pip", "pip.conf"), user_dir / "pip.conf"]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"], "pip.conf"))
    if explicit:
        files.append(Path(explicit))
    return [path for path in files if path.is_file()]


def pip_settings(
    files: Iterable[tuple[str, str]], env: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """key -> (value, source) for the keys we care about, after pip's precedence.

    ``files`` is (label, text) lowest precedence first; in each, ``[install]`` beats
    ``[global]``; ``PIP_<KEY>`` beats every file.
    """
    import configparser  # only when there is a pip file to read

    class PipConfigParser(configparser.RawConfigParser):
        """Key names as pip normalises them: ``index_url`` and ``INDEX-URL`` are ``index-url``."""

        def optionxform(self, optionstr: str) -> str:
            return optionstr.lower().replace("_", "-")

    keys = ("index-url", "extra-index-url", "keyring-provider")
    settled: dict[str, tuple[str, str]] = {}
    for label, text in files:
        parser = PipConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=label)
        except configparser.Error as exc:
            raise ConfigError(
                f"pip configuration {label} is not valid INI: {exc}".splitlines()[0]
            ) from exc
        for section in ("global", "install"):
            for key in keys:
                if parser.has_option(section, key):
                    settled[key] = (parser.get(section, key), f"{label} [{section}] {key}")
    for key in keys:
        variable = "PIP_" + key.upper().replace("-", "_")
        if env.get(variable, "").strip():
            settled[key] = (env[variable], variable)
    return settled


def pip_indexes(env: Mapping[str, str]) -> list[IndexRef]:
    """The index URLs pip would use here, each with the file or variable that set it."""
    settled = _pip_settled(env)
    found: list[IndexRef] = []
    for key in ("index-url", "extra-index-url"):
        if key in settled:
            value, source = settled[key]
            setting = source if source.startswith("PIP_") else key
            for url in value.split():
                found.append(IndexRef(None, url, source, url_username(url), None, "pip", setting))
    return found


def pip_keyring_provider(env: Mapping[str, str]) -> str | None:
    """pip's ``keyring-provider``: ``PIP_KEYRING_PROVIDER``, else the files pip loads."""
    settled = _pip_settled(env).get("keyring-provider")
    return settled[0].strip() if settled else None


def _pip_settled(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    return pip_settings(((str(p), _read_text(p)) for p in pip_config_files(env)), env)


# --- both ---------------------------------------------------------------------------------


def find_indexes(cwd: Path, env: Mapping[str, str]) -> list[IndexRef]:
    """Every index uv or pip would use from ``cwd`` with ``env``: uv's first, then pip's."""
    return uv_indexes(cwd, env) + pip_indexes(env)


def _load_toml(path: Path) -> Mapping[str, Any]:
    text = _read_text(path)
    # tomllib is the standard library's from 3.11; tomli is the same code for 3.10.
    toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    try:
        document: dict[str, Any] = toml.loads(text)
    except ValueError as exc:  # TOMLDecodeError
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix it or run elsewhere") from exc
    return document


def _read_text(path: Path) -> str:
    try:
        return read_regular_file(path, "configuration file").decode("utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
