"""Which indexes uv and pip configuration names, read as the tools read it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from menda_keyring.cli.project_indexes import (
    env_name,
    find_indexes,
    pip_keyring_provider,
    uv_keyring_provider,
)

pytestmark = pytest.mark.unit

CA = "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/simple/"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CONFIG_DIRS": str(home / "etc-xdg"),
        "PIP_CONFIG_FILE": os.devnull,
        **extra,
    }


def test_a_named_index_in_pyproject_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.uv]\nkeyring-provider = "subprocess"\n'
        f'[[tool.uv.index]]\nname = "Menda.Private"\nurl = "{CA}"\nauthenticate = "always"\n'
    )
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    env = clean_env(tmp_path / "home")
    [index] = find_indexes(sub, env)
    assert (index.name, index.url, index.authenticate, index.installer) == (
        "Menda.Private",
        CA,
        "always",
        "uv",
    )
    assert index.source == f"{tmp_path / 'pyproject.toml'} [[tool.uv.index]]"
    assert uv_keyring_provider(sub, env) == "subprocess"
    assert uv_keyring_provider(sub, {**env, "UV_KEYRING_PROVIDER": "disabled"}) == "disabled"


def test_uv_toml_wins_over_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[[tool.uv.index]]\nname = "a"\nurl = "{CA}"\n')
    (tmp_path / "uv.toml").write_text(
        f'keyring-provider = "subprocess"\n[[index]]\nname = "b"\nurl = "{CA}"\n'
    )
    env = clean_env(tmp_path / "home")
    assert [i.name for i in find_indexes(tmp_path, env)] == ["b"]
    assert find_indexes(tmp_path, {**env, "UV_NO_CONFIG": "1"}) == []


def test_a_pyproject_without_tool_uv_is_skipped_upwards(tmp_path: Path) -> None:
    (tmp_path / "uv.toml").write_text(f'index-url = "{CA}"\n')
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    [index] = find_indexes(inner, clean_env(tmp_path / "home"))
    assert index.source.endswith("uv.toml index-url")


def test_user_config_and_environment_variables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    user = home / ".config" / "uv"
    user.mkdir(parents=True)
    (user / "uv.toml").write_text('keyring-provider = "subprocess"\n')
    env = clean_env(
        home,
        UV_INDEX=f"corp={CA} https://pypi.org/simple",
        UV_INDEX_CORP_USERNAME="aws",
        UV_EXTRA_INDEX_URL=CA.replace("https://", "https://aws@"),
        PIP_INDEX_URL=CA,
    )
    indexes = find_indexes(tmp_path, env)
    assert [(i.name, i.source, i.username, i.installer) for i in indexes] == [
        ("corp", "UV_INDEX", "aws", "uv"),
        (None, "UV_INDEX", None, "uv"),
        (None, "UV_EXTRA_INDEX_URL", "aws", "uv"),
        (None, "PIP_INDEX_URL", None, "pip"),
    ]
    assert uv_keyring_provider(tmp_path, env) == "subprocess"


def test_env_name_is_uvs_spelling() -> None:
    assert env_name("menda-private.v2") == "MENDA_PRIVATE_V2"


def test_pip_conf_files_in_pips_override_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    user = home / ".config" / "pip"
    user.mkdir(parents=True)
    (user / "pip.conf").write_text(
        f"[global]\nkeyring-provider = import\nindex-url = {CA}\n"
        "[install]\nkeyring_provider = subprocess\n"
    )
    env = clean_env(home)
    del env["PIP_CONFIG_FILE"]
    [index] = find_indexes(tmp_path, env)
    assert index.installer == "pip" and index.source == f"{user / 'pip.conf'} [global] index-url"
    assert pip_keyring_provider(env) == "subprocess"
    assert pip_keyring_provider({**env, "PIP_KEYRING_PROVIDER": "disabled"}) == "disabled"
    assert pip_keyring_provider({**env, "PIP_CONFIG_FILE": os.devnull}) is None
