"""Which package indexes uv and pip will use here, as their configuration says.

Read the way the tools read it (uv's and pip's documentation and sources): uv takes the
nearest ``uv.toml``, or ``pyproject.toml`` with a ``[tool.uv]`` table, from the current
folder upwards (``uv.toml`` wins in the same folder), then the user's and the system's
``uv.toml``, then its environment variables; pip reads ``pip.conf`` files (global, user,
site, ``PIP_CONFIG_FILE``; ``os.devnull`` there means none) and ``PIP_*`` variables.
Only index URLs, user names and the keyring provider are read: nothing here decides
whether they are right (``doctor_checks`` does) and nothing touches the network.
"""

from __future__ import annotations

import configparser
import importlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Config files larger than this are not read (a project file is a few kB).
MAX_CONFIG = 1 << 20


@dataclass(frozen=True)
class IndexRef:
    """One index an installer will use. ``source`` says where it was found, for messages."""

    name: str | None
    url: str
    source: str
    #: The user name uv or pip will pass to keyring: from the URL, or ``UV_INDEX_<NAME>_USERNAME``.
    username: str | None = None
    #: uv's ``authenticate`` setting for a named index ("always", "auto", "never").
    authenticate: str | None = None
    #: "uv" or "pip": the installer whose configuration names it.
    installer: str = "uv"


def env_name(name: str) -> str:
    """An index name as uv spells it in variables: upper case, other characters as ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _url_username(url: str) -> str | None:
    try:
        user = urlsplit(url).username
    except ValueError:
        return None
    return user or None


# -- TOML and INI files -----------------------------------------------------------------------


def _toml_loads(text: str) -> dict[str, Any]:
    """``tomllib`` (Python 3.11+) or its backport ``tomli``, the same parser."""
    module = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")
    data = module.loads(text)
    return data if isinstance(data, dict) else {}


def _read_text(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_CONFIG:
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _read_toml(path: Path) -> dict[str, Any] | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return _toml_loads(text)
    except ValueError:  # tomllib.TOMLDecodeError is a ValueError
        return None


@dataclass(frozen=True)
class UvConfig:
    """One uv configuration file: its settings table and how messages name that table."""

    path: Path
    settings: dict[str, Any]
    table: str  # "[tool.uv]" in pyproject.toml, "" in uv.toml


def _project_config(cwd: Path) -> UvConfig | None:
    for folder in (cwd, *cwd.parents):
        uv_toml = _read_toml(folder / "uv.toml")
        if uv_toml is not None:
            return UvConfig(folder / "uv.toml", uv_toml, "")
        pyproject = _read_toml(folder / "pyproject.toml")
        tool = pyproject.get("tool") if pyproject is not None else None
        if isinstance(tool, dict) and isinstance(tool.get("uv"), dict):
            return UvConfig(folder / "pyproject.toml", tool["uv"], "[tool.uv]")
    return None


def _config_home(env: Mapping[str, str]) -> Path:
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".config"


def _user_and_system_configs(env: Mapping[str, str]) -> Iterator[UvConfig]:
    user = _config_home(env) / "uv" / "uv.toml"
    system_dirs = [d for d in env.get("XDG_CONFIG_DIRS", "").split(os.pathsep) if d]
    system = [Path(d) / "uv" / "uv.toml" for d in system_dirs] + [Path("/etc/uv/uv.toml")]
    settings = _read_toml(user)
    if settings is not None:
        yield UvConfig(user, settings, "")
    for path in system:  # only the first system file found is used
        settings = _read_toml(path)
        if settings is not None:
            yield UvConfig(path, settings, "")
            break


def uv_configs(cwd: Path, env: Mapping[str, str]) -> list[UvConfig]:
    """uv's configuration files, most important first (project, user, system)."""
    if env.get("UV_NO_CONFIG", "").strip().lower() in ("1", "true", "yes", "on"):
        return []
    explicit = env.get("UV_CONFIG_FILE")
    if explicit:
        settings = _read_toml(Path(explicit))
        return [] if settings is None else [UvConfig(Path(explicit), settings, "")]
    project = _project_config(cwd)
    return ([project] if project is not None else []) + list(_user_and_system_configs(env))


def _split(value: str) -> list[str]:
    return value.split()


def _named(value: str) -> tuple[str | None, str]:
    """``name=url`` or ``url``, as ``UV_INDEX`` and ``--index`` take them."""
    name, sep, url = value.partition("=")
    if sep and "://" not in name and name:
        return name, url
    return None, value


def _uv_indexes(cwd: Path, env: Mapping[str, str]) -> Iterator[IndexRef]:
    for config in uv_configs(cwd, env):
        where = f"{config.path} {config.table}".rstrip()
        array = "[[tool.uv.index]]" if config.table else "[[index]]"
        entries = config.settings.get("index")
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                continue
            name = entry.get("name") if isinstance(entry.get("name"), str) else None
            authenticate = entry.get("authenticate")
            yield _uv_ref(
                name,
                entry["url"],
                f"{config.path} {array}",
                env,
                authenticate if isinstance(authenticate, str) else None,
            )
        for key in ("index-url", "extra-index-url"):
            value = config.settings.get(key)
            for url in [value] if isinstance(value, str) else value or []:
                if isinstance(url, str):
                    yield _uv_ref(None, url, f"{where} {key}", env)
    for variable in ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"):
        for item in _split(env.get(variable, "")):
            named = variable in ("UV_INDEX", "UV_DEFAULT_INDEX")
            name, url = _named(item) if named else (None, item)
            yield _uv_ref(name, url, variable, env)


def _uv_ref(
    name: str | None,
    url: str,
    source: str,
    env: Mapping[str, str],
    authenticate: str | None = None,
) -> IndexRef:
    username = _url_username(url)
    if username is None and name is not None:
        username = env.get(f"UV_INDEX_{env_name(name)}_USERNAME") or None
    return IndexRef(name, url, source, username, authenticate, "uv")


# -- pip ------------------------------------------------------------------------------------


def pip_config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in its override order (later ones win)."""
    explicit = env.get("PIP_CONFIG_FILE")
    if explicit == os.devnull:
        return []
    home = Path(env.get("HOME") or os.path.expanduser("~"))
    system_dirs = [d for d in env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep) if d]
    files = [Path(d) / "pip" / "pip.conf" for d in system_dirs] + [Path("/etc/pip.conf")]
    if not (explicit and os.path.exists(explicit)):
        user_dir = (
            home / "Library" / "Application Support" / "pip"
            if sys.platform == "darwin"
            else _config_home(env) / "pip"
        )
        files += [home / ".pip" / "pip.conf", user_dir / "pip.conf"]
    if env.get("VIRTUAL_ENV"):
        files.append(Path(env["VIRTUAL_ENV"]) / "pip.conf")
    if explicit:
        files.append(Path(explicit))
    return files


def _pip_settings(env: Mapping[str, str]) -> Iterator[tuple[Path, str, str, str]]:
    """(file, section, key, value) of every pip setting, in override order."""
    for path in pip_config_files(env):
        text = _read_text(path)
        if text is None:
            continue
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error:
            continue
        for section in ("global", "install"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    yield path, section, key.replace("_", "-").lower(), value


def _pip_indexes(env: Mapping[str, str]) -> Iterator[IndexRef]:
    for path, section, key, value in _pip_settings(env):
        if key in ("index-url", "extra-index-url"):
            for url in _split(value):
                where = f"{path} [{section}] {key}"
                yield IndexRef(None, url, where, _url_username(url), None, "pip")
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        for url in _split(env.get(variable, "")):
            yield IndexRef(None, url, variable, _url_username(url), None, "pip")


# -- the API ----------------------------------------------------------------------------------


def find_indexes(cwd: Path, env: Mapping[str, str]) -> list[IndexRef]:
    """Every index uv's and pip's configuration names here (duplicates kept: each source)."""
    return [*_uv_indexes(cwd, env), *_pip_indexes(env)]


def uv_keyring_provider(cwd: Path, env: Mapping[str, str]) -> str | None:
    """uv's ``keyring-provider`` (``UV_KEYRING_PROVIDER``, else the first file setting it)."""
    if env.get("UV_KEYRING_PROVIDER"):
        return env["UV_KEYRING_PROVIDER"].strip()
    for config in uv_configs(cwd, env):
        value = config.settings.get("keyring-provider")
        if isinstance(value, str):
            return value
    return None


def pip_keyring_provider(env: Mapping[str, str]) -> str | None:
    """pip's ``keyring-provider`` (``PIP_KEYRING_PROVIDER``, else the files; pip's default
    when None is ``auto``). ``[install]`` overrides ``[global]``, later files earlier ones."""
    if env.get("PIP_KEYRING_PROVIDER"):
        return env["PIP_KEYRING_PROVIDER"].strip()
    found: dict[str, str] = {}
    for _path, section, key, value in _pip_settings(env):
        if key == "keyring-provider":
            found[section] = value.strip()
    return found.get("install") or found.get("global")
