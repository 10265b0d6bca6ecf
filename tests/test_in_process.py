"""In-process resolution against a real HTTP fake of menda-cloud."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from menda_keyring import errors
from menda_keyring.in_process import InProcessResolver
from menda_keyring.paths import token_cache_path
from menda_keyring.retry import RetryPolicy
from menda_keyring.urls import parse_codeartifact_service
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import (
    CA_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    m2m_env,
    write_profile,
    write_user_token,
)

TARGET = parse_codeartifact_service(CA_URL)
FAST = RetryPolicy(max_attempts=4, base=0.01, cap=0.05)


def resolve(env: dict[str, str], policy: RetryPolicy = FAST) -> str:
    assert TARGET is not None
    return InProcessResolver(env, policy=policy).resolve(TARGET).token


def test_env_m2m_exchanges_once_then_reuses_the_cached_machine_token(
    cloud: FakeMendaCloud, home: Path
) -> None:
    env = m2m_env(home, cloud)
    first = resolve(env)
    second = resolve(env)
    assert cloud.is_valid_registry_token(first, "menda-private")
    assert cloud.is_valid_registry_token(second, "menda-private")
    assert cloud.counts()["oauth"] == 1
    assert cloud.counts()["registry"] == 2  # registry tokens are never cached on disk
    cached = json.loads(token_cache_path(home).read_text())["tokens"]
    assert set(cached) == {f"m2m:client:{CLIENT_ID}"}
    assert cached[f"m2m:client:{CLIENT_ID}"]["host"] == cloud.url
    on_disk = token_cache_path(home).read_text()
    assert first not in on_disk and second not in on_disk and CLIENT_SECRET not in on_disk


def test_profile_m2m_uses_profile_cache_key(cloud: FakeMendaCloud, home: Path) -> None:
    write_profile(
        home,
        f"[ci]\nhost = {cloud.url}/\nauth_type = m2m\nclient_id = {CLIENT_ID}\n"
        f"client_secret = {CLIENT_SECRET}\n",
    )
    token = resolve({"HOME": str(home), "MENDA_PROFILE_ID": "ci"})
    assert cloud.is_valid_registry_token(token)
    assert "m2m:profile:ci" in json.loads(token_cache_path(home).read_text())["tokens"]


def test_u2m_uses_the_cli_login_and_never_calls_oauth(cloud: FakeMendaCloud, home: Path) -> None:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    with pytest.raises(
        errors.NoCachedLoginError, match=r"No valid cached token.*Run menda auth login"
    ):
        resolve({"HOME": str(home)})
    user_token, expires_at = cloud.issue_user_token("alice", 3600)
    write_user_token(home, "default", user_token, expires_at, cloud.url)
    assert cloud.is_valid_registry_token(resolve({"HOME": str(home)}))
    assert cloud.counts()["oauth"] == 0
    cloud.revoke(user_token)
    with pytest.raises(errors.NoCachedLoginError, match="rejected the signed-in token"):
        resolve({"HOME": str(home)})


def test_machine_401_gets_one_fresh_token_and_retries_once(
    cloud: FakeMendaCloud, home: Path
) -> None:
    env = m2m_env(home, cloud)
    resolve(env)
    cloud.revoke_all()
    assert cloud.is_valid_registry_token(resolve(env))
    assert cloud.counts()["oauth"] == 2
    cloud.inject("registry", status=401, times=2)
    with pytest.raises(
        errors.MendaCloudAPIError, match="also with a freshly issued token"
    ) as caught:
        resolve(env)
    assert caught.value.status_code == 401
    assert cloud.counts()["oauth"] == 3  # exactly one re-authentication


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_errors_are_retried(cloud: FakeMendaCloud, home: Path, status: int) -> None:
    cloud.inject("registry", status=status, retry_after=0, times=2)
    assert cloud.is_valid_registry_token(resolve(m2m_env(home, cloud)))
    assert cloud.counts()["registry"] == 3


def test_retries_are_bounded(cloud: FakeMendaCloud, home: Path) -> None:
    cloud.inject("registry", status=503, times=10)
    with pytest.raises(errors.MendaCloudAPIError, match="gave up after 4 attempts") as caught:
        resolve(m2m_env(home, cloud))
    assert caught.value.status_code == 503
    assert cloud.counts()["registry"] == 4


def test_retry_after_beyond_the_ceiling_fails_fast(cloud: FakeMendaCloud, home: Path) -> None:
    cloud.inject("registry", status=429, retry_after=120, times=5)
    started = time.monotonic()
    with pytest.raises(errors.MendaCloudAPIError, match="HTTP 429"):
        resolve(m2m_env(home, cloud, MENDA_KEYRING_TIMEOUT="5"))
    assert time.monotonic() - started < 4
    assert cloud.counts()["registry"] == 1


@pytest.mark.parametrize(("status", "needle"), [(403, "may not use"), (404, "no CodeArtifact")])
def test_403_and_404_are_not_retried(
    cloud: FakeMendaCloud, home: Path, status: int, needle: str
) -> None:
    cloud.inject("registry", status=status)
    with pytest.raises(errors.MendaCloudAPIError, match=needle) as caught:
        resolve(m2m_env(home, cloud))
    assert caught.value.status_code == status
    assert cloud.counts()["registry"] == 1


def test_slow_menda_cloud_hits_the_ceiling_not_a_hang(cloud: FakeMendaCloud, home: Path) -> None:
    cloud.inject("oauth", delay=10, times=5)
    started = time.monotonic()
    with pytest.raises(errors.MendaCloudAPIError):
        resolve(m2m_env(home, cloud, MENDA_KEYRING_TIMEOUT="2"))
    assert time.monotonic() - started < 6


def test_bad_client_secret_is_a_clear_error_without_the_secret(
    cloud: FakeMendaCloud, home: Path
) -> None:
    env = m2m_env(home, cloud, MENDA_CLIENT_SECRET="sentinel-wrong-secret-55")
    with pytest.raises(errors.MendaCloudAPIError) as caught:
        resolve(env)
    assert caught.value.status_code == 401
    assert "invalid_client" in str(caught.value) and CLIENT_ID in str(caught.value)
    assert "sentinel-wrong-secret-55" not in str(caught.value)


def test_connection_refused_is_a_typed_error(home: Path) -> None:
    env = {
        "HOME": str(home),
        "MENDA_CLIENT_ID": CLIENT_ID,
        "MENDA_CLIENT_SECRET": CLIENT_SECRET,
        "MENDA_HOST": "http://127.0.0.1:9",
        "MENDA_KEYRING_TIMEOUT": "3",
    }
    with pytest.raises(errors.MendaCloudAPIError, match="cannot connect") as caught:
        resolve(env)
    assert caught.value.status_code is None


def test_expired_registry_token_is_refused(cloud: FakeMendaCloud, home: Path) -> None:
    cloud.inject("registry", expired=True)
    with pytest.raises(errors.MendaCloudAPIError, match="already expired"):
        resolve(m2m_env(home, cloud))


def test_path_prefix_of_host_is_kept(home: Path) -> None:
    with FakeMendaCloud(prefix="/menda") as gateway:
        gateway.add_client(CLIENT_ID, CLIENT_SECRET)
        assert gateway.url.endswith("/menda")
        env = m2m_env(home, gateway, MENDA_HOST=gateway.url + "/")
        assert gateway.is_valid_registry_token(resolve(env))
