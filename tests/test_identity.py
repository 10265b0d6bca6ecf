"""Auth resolution order and the profile file's errors, as plain function calls."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from menda_keyring import errors
from menda_keyring.identity import normalise_host, resolve_identity

SECRET = "sentinel-client-secret-9f8e7d"


def write_cfg(home: Path, text: str) -> Path:
    path = home / ".menda" / "mendacfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_env_trio_wins_over_profile(tmp_path: Path) -> None:
    write_cfg(tmp_path, "[default]\nhost = https://profile.example\n")
    env = {
        "MENDA_CLIENT_ID": "ci-bot",
        "MENDA_CLIENT_SECRET": SECRET,
        "MENDA_HOST": "https://api.example.menda.cloud/",
        "MENDA_PROFILE_ID": "default",
    }
    identity = resolve_identity(env, tmp_path)
    assert (identity.source, identity.auth_type) == ("env", "m2m")
    assert identity.host == "https://api.example.menda.cloud"
    assert identity.cache_key == "m2m:client:ci-bot"
    assert SECRET not in repr(identity) and SECRET not in identity.label


@pytest.mark.parametrize("missing", ["MENDA_CLIENT_ID", "MENDA_CLIENT_SECRET", "MENDA_HOST"])
def test_incomplete_trio_falls_back_to_profile(tmp_path: Path, missing: str) -> None:
    write_cfg(tmp_path, "[default]\nhost = https://profile.example\n")
    env = {"MENDA_CLIENT_ID": "id", "MENDA_CLIENT_SECRET": SECRET, "MENDA_HOST": "https://x"}
    env[missing] = ""
    identity = resolve_identity(env, tmp_path)
    assert (identity.source, identity.auth_type, identity.cache_key) == (
        "profile",
        "u2m",
        "u2m:default",
    )


def test_profile_m2m_and_selected_profile(tmp_path: Path) -> None:
    write_cfg(
        tmp_path,
        "[default]\nhost = https://a.example\n\n"
        f"[ci]\nhost = https://gw.corp/menda/\nauth_type = M2M\nclient_id = bot\n"
        f"client_secret = {SECRET}\n",
    )
    identity = resolve_identity({"MENDA_PROFILE_ID": "ci"}, tmp_path)
    assert identity.auth_type == "m2m"
    assert identity.cache_key == "m2m:profile:ci"
    assert identity.host == "https://gw.corp/menda"  # path prefix kept, slash dropped
    assert identity.client_secret == SECRET


def test_fingerprint_changes_with_the_secret(tmp_path: Path) -> None:
    env = {"MENDA_CLIENT_ID": "id", "MENDA_CLIENT_SECRET": "a", "MENDA_HOST": "https://h"}
    first = resolve_identity(env, tmp_path)
    second = resolve_identity({**env, "MENDA_CLIENT_SECRET": "b"}, tmp_path)
    assert first.cache_key == second.cache_key
    assert first.fingerprint != second.fingerprint


@pytest.mark.parametrize(
    ("text", "env", "error", "needle"),
    [
        (None, {}, errors.ConfigFileNotFoundError, "Menda config file not found"),
        ("[other]\nhost = https://x\n", {}, errors.ProfileNotFoundError, "No profile [default]"),
        (
            "[default]\nhost = https://x\n",
            {"MENDA_PROFILE_ID": "ci"},
            errors.ProfileNotFoundError,
            "[ci]",
        ),
        ("[default]\nauth_type = u2m\n", {}, errors.ProfileMissingHostError, "has no host"),
        ("[default]\nhost =   \n", {}, errors.ProfileMissingHostError, "has no host"),
        (
            "[default]\nhost = https://x\nauth_type = m2m\nclient_id = id\n",
            {},
            errors.MissingClientCredentialsError,
            "auth_type=m2m but is missing client_id or client_secret",
        ),
        (
            f"[default]\nhost = https://x\nauth_type = m2m\nclient_secret = {SECRET}\n",
            {},
            errors.MissingClientCredentialsError,
            "auth_type=m2m but is missing client_id or client_secret",
        ),
        (
            "[default]\nhost = https://x\nauth_type = sso\n",
            {},
            errors.ConfigError,
            "auth_type='sso'",
        ),
        (f"client_secret = {SECRET}\n[default]\n", {}, errors.ConfigError, "not valid INI: line 1"),
        (
            f"[default]\nhost = https://x\n  {SECRET}\n=oops\n",
            {},
            errors.ConfigError,
            "not valid INI",
        ),
        (
            "[default]\nhost=https://a\n[default]\nhost=https://b\n",
            {},
            errors.ConfigError,
            "appears twice",
        ),
        ("[default]\nhost = api.example.menda.cloud\n", {}, errors.InvalidHostError, "https://"),
        (
            "[default]\nhost = http://api.example.menda.cloud\n",
            {},
            errors.InvalidHostError,
            "loopback",
        ),
        ("[default]\nhost = https://user:pw@x\n", {}, errors.InvalidHostError, "user information"),
        ("[default]\nhost = https://x:badport\n", {}, errors.InvalidHostError, "not a valid URL"),
        ("[default]\nhost = https://x y\n", {}, errors.InvalidHostError, "spaces"),
    ],
)
def test_configuration_errors_are_typed_and_name_file_and_profile(
    tmp_path: Path, text: str | None, env: dict[str, str], error: type, needle: str
) -> None:
    if text is not None:
        write_cfg(tmp_path, text)
    with pytest.raises(error) as caught:
        resolve_identity(env, tmp_path)
    message = str(caught.value)
    assert needle in message
    assert str(tmp_path / ".menda" / "mendacfg") in message
    assert SECRET not in message
    assert isinstance(caught.value, errors.MendaError)


def test_unreadable_config_is_a_typed_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        path = write_cfg(tmp_path, "[default]\nhost = https://x\n")
        path.unlink()
        path.mkdir()  # root reads anything; a directory still cannot be read as a file
        with pytest.raises(errors.ConfigError, match="is a directory"):
            resolve_identity({}, tmp_path)
        return
    path = write_cfg(tmp_path, "[default]\nhost = https://x\n")
    path.chmod(0)
    with pytest.raises(errors.ConfigError, match="permission denied"):
        resolve_identity({}, tmp_path)


@pytest.mark.parametrize(
    "host",
    ["http://127.0.0.1:8080", "http://localhost/menda", "http://[::1]:9", "http://127.9.9.9"],
)
def test_loopback_http_is_allowed(host: str) -> None:
    assert normalise_host(host, "test") == host.rstrip("/")


def test_https_host_keeps_path_prefix() -> None:
    assert normalise_host(" https://gw.corp/menda/ ", "t") == "https://gw.corp/menda"
