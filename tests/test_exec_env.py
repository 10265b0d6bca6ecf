"""exec's environment, decided without I/O: which variable carries which index's token."""

from __future__ import annotations

import pytest

from menda_keyring.cli.exec_env import (
    bare_url,
    carrier_problems,
    child_env,
    cli_indexes,
    is_upload_url,
    needs_of,
    targets_of,
    with_token,
)
from menda_keyring.cli.project_indexes import IndexRef
from menda_keyring.errors import IndexCredentialsError, NotCodeArtifactError
from menda_keyring.urls import RegistryTarget

pytestmark = pytest.mark.unit

HOST = "menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
OTHER = "other-111122223333.d.codeartifact.us-east-1.amazonaws.com"
CA = f"https://{HOST}/pypi/menda-plugins/simple/"
CA2 = f"https://{HOST}/pypi/second-repo/simple/"
UPLOAD = f"https://{HOST}/pypi/menda-plugins/"
ELSEWHERE = f"https://{OTHER}/pypi/repo/simple/"
PRIVATE = RegistryTarget("menda-private", "058264169513", "eu-west-1")
OTHER_T = RegistryTarget("other", "111122223333", "us-east-1")
TOKENS = {PRIVATE: "tok/en+1", OTHER_T: "token-2"}


def uv_index(name: str | None, url: str, setting: str = "index") -> IndexRef:
    return IndexRef(name, url, "pyproject.toml [[tool.uv.index]]", None, "always", "uv", setting)


def env_ref(variable: str, url: str, name: str | None = None, tool: str = "uv") -> IndexRef:
    return IndexRef(name, url, variable, None, None, tool, variable)


def test_with_token_replaces_user_information_and_quotes_the_token() -> None:
    assert with_token(f"https://aws@{HOST}/pypi/r/simple/", "a/b+c") == (
        f"https://aws:a%2Fb%2Bc@{HOST}/pypi/r/simple/"
    )
    assert with_token(f"https://x:old@{HOST}/s/", "t") == f"https://aws:t@{HOST}/s/"
    assert bare_url(f"https://aws:secret@{HOST}/s/") == f"https://{HOST}/s/"


def test_upload_urls_are_the_ones_without_simple() -> None:
    assert is_upload_url(UPLOAD) and is_upload_url(UPLOAD.rstrip("/"))
    assert not is_upload_url(CA) and not is_upload_url(CA.rstrip("/"))


def test_named_index_gets_uv_index_name_variables_with_uvs_normalisation() -> None:
    refs = [uv_index("menda.private-1", CA), uv_index("pypi", "https://pypi.org/simple/")]
    out = child_env({"PATH": "/bin"}, refs, TOKENS)
    assert out == {
        "PATH": "/bin",
        "UV_INDEX_MENDA_PRIVATE_1_USERNAME": "aws",
        "UV_INDEX_MENDA_PRIVATE_1_PASSWORD": "tok/en+1",
    }


def test_url_variables_are_rewritten_in_place_keeping_other_urls_and_names() -> None:
    env = {
        "UV_INDEX": f"https://pypi.org/simple/ corp={CA}",
        "PIP_EXTRA_INDEX_URL": f"{ELSEWHERE} https://example.org/simple/",
        "UV_INDEX_URL": "https://pypi.org/simple/",
    }
    refs = [
        env_ref("UV_INDEX", "https://pypi.org/simple/"),
        env_ref("UV_INDEX", CA, name="corp"),
        env_ref("UV_INDEX_URL", "https://pypi.org/simple/"),
        env_ref("PIP_EXTRA_INDEX_URL", ELSEWHERE, tool="pip"),
        env_ref("PIP_EXTRA_INDEX_URL", "https://example.org/simple/", tool="pip"),
    ]
    out = child_env(env, refs, TOKENS)
    assert (
        out["UV_INDEX"]
        == f"https://pypi.org/simple/ corp=https://aws:tok%2Fen%2B1@{HOST}/pypi/menda-plugins/simple/"
    )
    assert (
        out["PIP_EXTRA_INDEX_URL"]
        == f"https://aws:token-2@{OTHER}/pypi/repo/simple/ https://example.org/simple/"
    )
    assert out["UV_INDEX_URL"] == "https://pypi.org/simple/"  # nothing of ours: untouched


def test_a_files_index_url_is_overridden_by_its_variable_with_the_same_url() -> None:
    refs = [
        IndexRef(None, CA, "uv.toml index-url", None, None, "uv", "index-url"),
        IndexRef(None, CA2, "~/.config/uv/uv.toml index-url", None, None, "uv", "index-url"),
        IndexRef(None, CA, "pip.conf [global] index-url", None, None, "pip", "index-url"),
    ]
    out = child_env({}, refs, TOKENS)
    # The most specific uv file wins a single-URL setting, as in uv.
    assert out == {
        "UV_INDEX_URL": with_token(CA, "tok/en+1"),
        "PIP_INDEX_URL": with_token(CA, "tok/en+1"),
    }


def test_one_upload_index_sets_publish_and_twine_variables_unless_url_already_set() -> None:
    refs = cli_indexes([UPLOAD])
    out = child_env({"TWINE_REPOSITORY_URL": "https://mine/"}, refs, TOKENS)
    assert out == {
        "UV_PUBLISH_USERNAME": "aws",
        "UV_PUBLISH_PASSWORD": "tok/en+1",
        "TWINE_USERNAME": "aws",
        "TWINE_PASSWORD": "tok/en+1",
        "UV_PUBLISH_URL": UPLOAD,
        "TWINE_REPOSITORY_URL": "https://mine/",
    }


def test_indexes_without_a_carrier_are_named_before_anything_is_fetched() -> None:
    refs = [
        uv_index(None, CA),
        IndexRef(
            None,
            CA2,
            "pyproject.toml [tool.uv] extra-index-url",
            None,
            None,
            "uv",
            "extra-index-url",
        ),
        *cli_indexes([CA, UPLOAD, f"{OTHER_T.domain}-x={ELSEWHERE.replace('/simple/', '/')}"]),
        *cli_indexes([f"https://{HOST}/pypi/third/"]),
    ]
    problems = carrier_problems(needs_of(refs))
    assert len(problems) == 4, problems
    assert "index https://" in problems[0] and "name = ..." in problems[0]
    assert "named [[tool.uv.index]]" in problems[1]
    assert "--index NAME=URL" in problems[2]
    assert problems[3].startswith("more than one upload --index")


def test_one_fetch_per_domain_whatever_the_number_of_indexes() -> None:
    refs = [
        uv_index("a", CA),
        uv_index("b", CA2),
        env_ref("UV_INDEX", ELSEWHERE),
        uv_index("p", "https://pypi.org/simple/"),
    ]
    assert targets_of(needs_of(refs)) == {PRIVATE: CA, OTHER_T: ELSEWHERE}


def test_an_index_without_a_token_is_left_as_it_was() -> None:
    env = {"UV_INDEX_URL": CA}
    refs = [env_ref("UV_INDEX_URL", CA), uv_index("other", ELSEWHERE)]
    out = child_env(env, refs, {OTHER_T: "token-2"})
    assert out == {**env, "UV_INDEX_OTHER_USERNAME": "aws", "UV_INDEX_OTHER_PASSWORD": "token-2"}


def test_two_names_that_uv_maps_to_one_variable_in_different_domains_are_refused() -> None:
    refs = [uv_index("corp-a", CA), uv_index("corp.a", ELSEWHERE)]
    with pytest.raises(IndexCredentialsError, match="UV_INDEX_CORP_A_PASSWORD"):
        child_env({}, refs, TOKENS)


def test_cli_index_must_be_codeartifact_and_never_shows_a_password() -> None:
    with pytest.raises(NotCodeArtifactError) as caught:
        cli_indexes(["https://user:hunter2secret@pypi.example/simple/"])
    assert "hunter2secret" not in str(caught.value)
    assert cli_indexes([f"x={CA}"])[0].name == "x"
