"""Refreshing a signed-in user's login in process, through the real ``keyring`` CLI, against
the fake menda-cloud (rotation and reuse detection included): one refresh per expiry
across a herd of processes, the entry written back with everything else kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import (
    base_env,
    read_cache_entries,
    write_profile,
    write_user_login,
    write_user_token,
)
from tests.support.errors import typed_error
from tests.support.procs import keyring_get, keyring_herd

pytestmark = pytest.mark.cli

#: Written by another program beside ours: it must survive every write.
VENDOR = {"vendor:thing": {"anything": [1, 2, 3]}}


def signed_in(cloud: FakeMendaCloud, home: Path, lifetime: int = 0, **extra: Any) -> dict[str, Any]:
    """A u2m profile whose login's access token has run out (``lifetime`` 0)."""
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    login = cloud.issue_user_login("alice", lifetime=lifetime)
    write_user_login(home, "default", {**login, **extra}, cloud.url)
    other = cloud.issue_user_login("carol")
    write_user_login(home, "other", other, cloud.url)
    path = home / ".menda" / "tokens" / "cache" / ".token"
    data = json.loads(path.read_text())
    data["tokens"].update(VENDOR)
    path.write_text(json.dumps(data))
    return login


def env_of(home: Path) -> dict[str, str]:
    return base_env(home, MENDA_CREDD="off")


def test_an_expired_login_is_refreshed_and_written_back_keeping_everything_else(
    cloud: FakeMendaCloud, home: Path
) -> None:
    login = signed_in(cloud, home, user="alice@example")
    before = read_cache_entries(home)
    first = keyring_get(env_of(home))
    assert cloud.is_valid_registry_token(first.token)
    assert cloud.counts()["refresh_ok"] == 1 and cloud.counts()["oauth"] == 0
    after = read_cache_entries(home)
    entry = after["u2m:default"]
    assert entry["access_token"] != login["access_token"]
    assert cloud.access_token_identity(entry["access_token"]) == "user:alice"
    assert entry["refresh_token"] != login["refresh_token"]  # rotated
    assert cloud.refresh_token_state(entry["refresh_token"]) == "live"
    assert cloud.refresh_token_state(login["refresh_token"]) == "used"
    assert entry["user"] == "alice@example" and entry["client_id"] == "menda-cli"
    assert {k: v for k, v in after.items() if k != "u2m:default"} == {
        k: v for k, v in before.items() if k != "u2m:default"
    }
    # The next call uses the refreshed access token: no second refresh.
    assert cloud.is_valid_registry_token(keyring_get(env_of(home)).token)
    assert cloud.counts()["refresh"] == 1


def test_thirty_two_processes_on_an_expired_login_make_one_refresh(
    cloud: FakeMendaCloud, home: Path
) -> None:
    login = signed_in(cloud, home)
    runs = keyring_herd(env_of(home) | {"MENDA_KEYRING_TIMEOUT": "120"}, 32, timeout=240)
    assert [r.returncode for r in runs] == [0] * 32, "\n".join(r.describe() for r in runs)
    assert all(cloud.is_valid_registry_token(r.token) for r in runs)
    counts = cloud.counts()
    assert counts["refresh"] == counts["refresh_ok"] == 1, counts
    assert counts["registry"] == 32 and counts["oauth"] == 0
    entry = read_cache_entries(home)["u2m:default"]
    assert cloud.refresh_token_state(entry["refresh_token"]) == "live"
    assert cloud.refresh_token_state(login["refresh_token"]) == "used"  # never reused


def test_a_rejected_access_token_is_refreshed_once_and_the_exchange_retried_once(
    cloud: FakeMendaCloud, home: Path
) -> None:
    login = signed_in(cloud, home, lifetime=3600)
    cloud.revoke(login["access_token"])
    assert cloud.is_valid_registry_token(keyring_get(env_of(home)).token)
    counts = cloud.counts()
    assert (counts["refresh"], counts["registry"], counts["registry_ok"]) == (1, 2, 1)


def test_a_login_that_is_over_says_sign_in_again_and_its_entry_stays(
    cloud: FakeMendaCloud, home: Path
) -> None:
    login = signed_in(cloud, home)
    cloud.revoke(login["refresh_token"])
    path = home / ".menda" / "tokens" / "cache" / ".token"
    before = path.read_bytes()
    result = keyring_get(env_of(home))
    name, message = typed_error(result.stderr)
    assert name == "NoCachedLoginError", result.describe()
    assert "invalid_grant" in message and "Run menda auth login" in message
    assert login["refresh_token"] not in result.stderr
    assert path.read_bytes() == before


def test_a_reused_refresh_token_ends_the_login(cloud: FakeMendaCloud, home: Path) -> None:
    """As real servers do: a dead refresh token used again is refused, and revokes the live
    one rotated from it."""
    login = signed_in(cloud, home)
    assert keyring_get(env_of(home)).ok
    rotated = read_cache_entries(home)["u2m:default"]["refresh_token"]
    write_user_login(home, "default", login, cloud.url)  # an old copy of the file comes back
    result = keyring_get(env_of(home))
    assert typed_error(result.stderr)[0] == "NoCachedLoginError", result.describe()
    assert "invalid_grant" in result.stderr
    assert cloud.refresh_token_state(rotated) == "revoked"


def test_without_rotation_the_refresh_token_stays(cloud: FakeMendaCloud, home: Path) -> None:
    cloud.configure(rotate_refresh_tokens=False)
    login = signed_in(cloud, home)
    assert keyring_get(env_of(home)).ok
    entry = read_cache_entries(home)["u2m:default"]
    assert entry["refresh_token"] == login["refresh_token"]
    assert entry["access_token"] != login["access_token"]
    assert cloud.refresh_token_state(login["refresh_token"]) == "live"


def test_a_refresh_token_is_never_sent_to_another_host(cloud: FakeMendaCloud, home: Path) -> None:
    with FakeMendaCloud() as issuer:
        write_profile(home, f"[default]\nhost = {cloud.url}\n")
        login = issuer.issue_user_login("alice", lifetime=0)
        write_user_login(home, "default", login, issuer.url)
        result = keyring_get(env_of(home))
        name, message = typed_error(result.stderr)
        assert name == "InvalidLoginEntryError", result.describe()
        assert issuer.url in message and "menda auth login" in message
        assert issuer.counts().get("refresh", 0) == cloud.counts().get("refresh", 0) == 0
        assert login["refresh_token"] not in result.stderr


@pytest.mark.parametrize(
    "members", [{"refresh_token": 5}, {"refresh_token": "mrt_x", "client_id": {"id": "x"}}]
)
def test_an_entry_of_the_wrong_shape_is_a_typed_error_and_loses_nothing(
    cloud: FakeMendaCloud, home: Path, members: dict[str, Any]
) -> None:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    token, expires = cloud.issue_user_token("alice", lifetime=0)
    write_user_token(home, "default", token, expires, cloud.url, **members)
    before = read_cache_entries(home)
    result = keyring_get(env_of(home))
    assert typed_error(result.stderr)[0] == "InvalidLoginEntryError", result.describe()
    assert read_cache_entries(home) == before
    assert cloud.counts().get("refresh", 0) == 0
