"""Which indexes uv and pip would use: uv's upward search, its env variables, pip's files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from menda_keyring.cli.project_indexes import (
    IndexRef,
    find_indexes,
    pip_keyring_provider,
    split_named,
    uv_env_name,
    uv_keyring_provider,
)
from menda_keyring.errors import ConfigError

pytestmark = pytest.mark.unit

CA = "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/menda-plugins/simple/"
UPLOAD = (
    "https://menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com/pypi/menda-plugins/"
)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No user or system config of the machine running the tests: private XDG folders."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
        "XDG_CONFIG_DIRS": str(tmp_path / "etc-xdg"),
        "PIP_CONFIG_FILE": os.devnull,
        **extra,
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("menda-private", "MENDA_PRIVATE"),
        ("foo.bar_baz", "FOO_BAR_BAZ"),
        ("Internal2", "INTERNAL2"),
        ("a-.b", "A__B"),
    ],
)
def test_uv_env_name_upper_cases_and_replaces_everything_else(name: str, expected: str) -> None:
    assert uv_env_name(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"private={CA}", ("private", CA)),
        (CA, (None, CA)),
        ("https://host/simple/?a=b", (None, "https://host/simple/?a=b")),
        ("x=notaurl", (None, "x=notaurl")),
    ],
)
def test_split_named_reads_name_equals_url_as_uv_does(
    value: str, expected: tuple[str | None, str]
) -> None:
    assert split_named(value) == expected


def test_named_index_of_the_nearest_pyproject_with_tool_uv(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "src" / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.uv]\nkeyring-provider = "subprocess"\n'
        f'[[tool.uv.index]]\nname = "menda-private"\nurl = "{CA}"\nauthenticate = "always"\n'
        f'publish-url = "{UPLOAD}"\n'
    )
    # A pyproject without [tool.uv] on the way up does not stop the search.
    (project / "src" / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    found = find_indexes(project / "src" / "pkg", clean_env(tmp_path))
    source = f"{project / 'pyproject.toml'} [[tool.uv.index]]"
    assert found == [
        IndexRef("menda-private", CA, source, None, "always", "uv", "index"),
        IndexRef(
            "menda-private", UPLOAD, f"{source} publish-url", None, "always", "uv", "publish-url"
        ),
    ]
    assert found[0].env_name == "MENDA_PRIVATE"
    assert uv_keyring_provider(project / "src", clean_env(tmp_path)) == "subprocess"


def test_uv_toml_wins_over_pyproject_in_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[[tool.uv.index]]\nname = "a"\nurl = "{CA}"\n')
    aws = CA.replace("https://", "https://aws@")
    (tmp_path / "uv.toml").write_text(
        f'index-url = "{aws}"\n[pip]\nkeyring-provider = "disabled"\n'
    )
    found = find_indexes(tmp_path, clean_env(tmp_path))
    assert found == [
        IndexRef(None, aws, f"{tmp_path / 'uv.toml'} index-url", "aws", None, "uv", "index-url")
    ]
    assert uv_keyring_provider(tmp_path, clean_env(tmp_path)) == "disabled"


def test_user_config_adds_and_uv_no_config_reads_nothing(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    user = Path(env["XDG_CONFIG_HOME"], "uv", "uv.toml")
    user.parent.mkdir(parents=True)
    user.write_text(f'[[index]]\nname = "corp"\nurl = "{CA}"\n')
    (tmp_path / "uv.toml").write_text('extra-index-url = ["https://example.org/simple/"]\n')
    sources = [ref.source for ref in find_indexes(tmp_path, env)]
    assert sources == [f"{tmp_path / 'uv.toml'} extra-index-url", f"{user} [[index]]"]
    assert find_indexes(tmp_path, {**env, "UV_NO_CONFIG": "1"}) == []


def test_uv_variables_and_their_override_of_a_files_index_url(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.uv.pip]\nindex-url = "{CA}"\n')
    env = clean_env(
        tmp_path,
        UV_INDEX_URL="https://pypi.org/simple/",
        UV_INDEX=f"private={CA} https://example.org/simple/",
        UV_EXTRA_INDEX_URL=f"{UPLOAD}simple/",
    )
    found = find_indexes(tmp_path, env)
    assert [(r.name, r.url, r.source) for r in found] == [
        ("private", CA, "UV_INDEX"),
        (None, "https://example.org/simple/", "UV_INDEX"),
        (None, "https://pypi.org/simple/", "UV_INDEX_URL"),
        (None, f"{UPLOAD}simple/", "UV_EXTRA_INDEX_URL"),
    ]
    without = find_indexes(tmp_path, clean_env(tmp_path))
    assert [r.source for r in without] == [f"{tmp_path / 'pyproject.toml'} [tool.uv.pip] index-url"]


def test_pip_files_sections_and_variables_in_pips_precedence(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nindex_url = https://pypi.org/simple/\nkeyring-provider = import\n"
        f"[install]\nindex-url = {CA}\nextra-index-url =\n    https://a.example/simple/\n"
        "    https://b.example/simple/\n"
    )
    env = clean_env(tmp_path, PIP_CONFIG_FILE=str(conf))
    found = find_indexes(tmp_path, env)
    assert [(r.url, r.source) for r in found] == [
        (CA, f"{conf} [install] index-url"),
        ("https://a.example/simple/", f"{conf} [install] extra-index-url"),
        ("https://b.example/simple/", f"{conf} [install] extra-index-url"),
    ]
    assert pip_keyring_provider(env) == "import"
    env["PIP_INDEX_URL"] = "https://override.example/simple/"
    env["PIP_KEYRING_PROVIDER"] = "subprocess"
    override = find_indexes(tmp_path, env)[0]
    assert override == IndexRef(
        None,
        "https://override.example/simple/",
        "PIP_INDEX_URL",
        None,
        None,
        "pip",
        "PIP_INDEX_URL",
    )
    assert override.from_environment and not found[0].from_environment
    assert pip_keyring_provider(env) == "subprocess"
    assert pip_keyring_provider(clean_env(tmp_path)) is None  # os.devnull: no file at all


def test_broken_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "uv.toml").write_text("index-url = [unclosed\n")
    with pytest.raises(ConfigError, match=r"uv\.toml is not valid TOML"):
        find_indexes(tmp_path, clean_env(tmp_path))


def test_a_named_index_takes_its_user_name_from_uv_index_name_username(tmp_path: Path) -> None:
    """uv passes ``UV_INDEX_<NAME>_USERNAME`` to keyring for a URL without a user name."""
    home = tmp_path / "home"
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CONFIG_DIRS": str(home / "etc-xdg"),
        "PIP_CONFIG_FILE": os.devnull,
        "UV_INDEX": f"corp.v2={CA} other={CA}",
        "UV_INDEX_CORP_V2_USERNAME": "aws",
    }
    assert [(i.name, i.username) for i in find_indexes(tmp_path, env)] == [
        ("corp.v2", "aws"),
        ("other", None),
    ]
