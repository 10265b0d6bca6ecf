"""Refreshing a signed-in user's login (contract 3b), without I/O: the entry, the protocol,
and the resolution flow driven effect by effect over an in-memory token cache."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from menda_keyring import errors
from menda_keyring import resolution as flow
from menda_keyring.cloud_protocol import (
    REFRESH_WHAT,
    HttpRequest,
    HttpResponse,
    parse_refresh_response,
    refresh_request,
)
from menda_keyring.identity import Identity
from menda_keyring.login_entry import (
    read_login,
    refreshed_entry,
    without_secrets,
)
from menda_keyring.retry import Deadline, RetryPolicy
from menda_keyring.token_cache import CacheSnapshot
from menda_keyring.tokens import AccessToken, RefreshedLogin, RefreshGrant
from menda_keyring.urls import RegistryTarget

pytestmark = pytest.mark.unit

HOST = "https://api.example"
USER = Identity("profile", "u2m", HOST, "u2m:dev", "dev")
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
NOW = 1_800_000_000.0
CACHE = Path("/nowhere/.menda/tokens/cache/.token")
RT = "sentinel-refresh-token-0f3a9c"
FAST = RetryPolicy(max_attempts=4, base=0.01, cap=0.02)


def entry(**members: Any) -> dict[str, Any]:
    base = {
        "access_token": "old-access",
        "token_type": "Bearer",
        "expires_at": int(NOW) + 30,  # under the 60 s margin: needs a refresh
        "host": HOST,
        "auth_type": "u2m",
        "refresh_token": RT,
    }
    base.update(members)
    return {k: v for k, v in base.items() if v is not DELETE}


DELETE: Any = object()


def response(status: int, body: object) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode())


# -- the entry --------------------------------------------------------------------------------


def test_an_entry_with_a_refresh_token_offers_a_grant_for_its_client() -> None:
    login = read_login(entry(), USER)
    assert login is not None and login.access is not None
    assert login.access.token == "old-access" and not login.access.usable(NOW)
    assert login.grant == RefreshGrant(RT, "menda-cli")  # the contract's default client
    named = read_login(entry(client_id="menda-vscode"), USER)
    assert named is not None and named.grant == RefreshGrant(RT, "menda-vscode")
    assert RT not in repr(login)


def test_an_entry_without_a_refresh_token_offers_none() -> None:
    for plain in (entry(refresh_token=DELETE), entry(refresh_token=None)):
        login = read_login(plain, USER)
        assert login is not None and login.grant is None and login.problem is None
    assert read_login(entry(auth_type="m2m"), USER) is None
    assert read_login("not an entry", USER) is None


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ({"refresh_token": 5}, "refresh_token is not a non-empty string"),
        ({"refresh_token": ""}, "refresh_token is not a non-empty string"),
        ({"refresh_token": ["x"]}, "refresh_token is not a non-empty string"),
        ({"client_id": 7}, "client_id is not a non-empty string"),
        ({"client_id": ""}, "client_id is not a non-empty string"),
        ({"host": "https://elsewhere.example"}, "made for host https://elsewhere.example"),
        ({"host": None}, "host is not a string"),
    ],
)
def test_an_entry_that_cannot_be_refreshed_says_why(members: dict[str, Any], problem: str) -> None:
    login = read_login(entry(**members), USER)
    assert login is not None and login.grant is None
    assert login.problem is not None and problem in login.problem
    # The daemon's copy without secrets leads to the very same decision.
    theirs = read_login(without_secrets(entry(**members)), USER)
    assert theirs is not None and (theirs.grant, theirs.problem) == (None, login.problem)


def test_a_usable_access_token_is_used_whatever_the_refresh_members_say() -> None:
    login = read_login(entry(expires_at=int(NOW) + 3600, refresh_token=5), USER)
    assert login is not None and login.access is not None and login.access.usable(NOW)


def test_the_refreshed_entry_keeps_every_member_the_refresh_does_not_replace() -> None:
    old = entry(client_id="menda-cli", user="alice@example", scopes=["registry"])
    access = AccessToken("new-access", NOW + 3600.7, HOST, "u2m")
    rotated = refreshed_entry(old, USER, RefreshedLogin(access, "rotated-rt"))
    assert rotated == {
        **old,
        "access_token": "new-access",
        "expires_at": int(NOW) + 3600,
        "refresh_token": "rotated-rt",
    }
    kept = refreshed_entry(old, USER, RefreshedLogin(access, None))
    assert kept["refresh_token"] == RT and kept["access_token"] == "new-access"
    assert old["access_token"] == "old-access"  # the input is not changed


def test_what_the_daemon_remembers_holds_no_token_and_decides_alike() -> None:
    raw = entry(client_id="menda-cli", user="alice@example")
    kept = without_secrets(raw)
    text = json.dumps(kept)
    assert RT not in text and "old-access" not in text and "alice" not in text
    mine, theirs = read_login(raw, USER), read_login(kept, USER)
    assert mine is not None and theirs is not None
    assert theirs.grant is not None and mine.grant is not None
    assert theirs.grant.client_id == mine.grant.client_id
    assert mine.access is not None and theirs.access is not None
    assert theirs.access.expires_at == mine.access.expires_at
    # Digests tell logins apart.
    other = without_secrets(entry(access_token="another", refresh_token="another-rt"))
    assert isinstance(kept, dict) and isinstance(other, dict)
    assert kept["access_token"] != other["access_token"]
    assert kept["refresh_token"] != other["refresh_token"]


# -- the protocol --------------------------------------------------------------------------------


def test_the_refresh_request_follows_rfc6749_section_6() -> None:
    request = refresh_request(HOST, RefreshGrant(RT, "menda-cli"))
    assert request.method == "POST" and request.url == HOST + "/oauth2/token"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.body.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [RT],
        "client_id": ["menda-cli"],
    }
    assert request.what == REFRESH_WHAT and request.secrets == (RT,)
    assert RT not in repr(request)


def test_a_refresh_answer_with_and_without_rotation() -> None:
    body = {"access_token": "a", "token_type": "Bearer", "expires_in": 3600}
    rotated = parse_refresh_response(response(200, {**body, "refresh_token": "r2"}), USER, NOW)
    assert rotated.access == AccessToken("a", NOW + 3600, HOST, "u2m")
    assert rotated.refresh_token == "r2" and "r2" not in repr(rotated)
    assert parse_refresh_response(response(200, body), USER, NOW).refresh_token is None


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer", "expires_in": 3600},
        {"access_token": "", "expires_in": 3600},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "expires_in": -5},
        {"access_token": "a", "expires_in": "3600"},
        {"access_token": "a", "expires_in": True},
        {"access_token": "a", "expires_in": 3600, "token_type": "mac"},
        {"access_token": "a", "expires_in": 3600, "refresh_token": 5},
        {"access_token": "a", "expires_in": 3600, "refresh_token": ""},
        ["not", "an", "object"],
    ],
)
def test_a_refresh_answer_of_the_wrong_shape_is_a_typed_error(body: object) -> None:
    with pytest.raises(errors.MendaCloudAPIError, match="wrong shape") as caught:
        parse_refresh_response(response(200, body), USER, NOW)
    assert not isinstance(caught.value, errors.NoCachedLoginError)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_grant"),
        (400, "invalid_request"),
        (401, "invalid_client"),
        (400, "unauthorized_client"),
    ],
)
def test_any_400_or_401_to_a_refresh_means_the_login_is_over(status: int, code: str) -> None:
    with pytest.raises(errors.NoCachedLoginError, match=code):
        parse_refresh_response(response(status, {"error": code}), USER, NOW)


def test_a_busy_token_endpoint_is_transient_and_other_refusals_are_not_a_lost_login() -> None:
    with pytest.raises(errors.TransientError):
        parse_refresh_response(response(503, {"error": "busy"}), USER, NOW)
    with pytest.raises(errors.MendaCloudAPIError, match="HTTP 403") as caught:
        parse_refresh_response(response(403, {"error": "forbidden"}), USER, NOW)
    assert not isinstance(caught.value, errors.NoCachedLoginError)


# -- the flow, effect by effect ---------------------------------------------------------------


Answer = Callable[[HttpRequest], HttpResponse]


class Cache:
    """An in-memory token cache and menda-cloud; records every effect the flow asks for.

    ``between``: called when the lock is taken (another process's write just before).
    """

    def __init__(self, tokens: dict[str, Any], answers: dict[str, list[HttpResponse]]) -> None:
        self.tokens = tokens
        self.answers = answers
        self.effects: list[str] = []
        self.sent: list[HttpRequest] = []
        self.between: Callable[[], None] | None = None
        self.lock_free = True

    def perform(self, effect: flow.Effect) -> Any:
        self.effects.append(type(effect).__name__)
        if isinstance(effect, flow.ReadCache):
            return CacheSnapshot(json.loads(json.dumps(self.tokens)), corrupt=False)
        if isinstance(effect, flow.LockCache):
            if self.between is not None:
                self.between()
            return self.lock_free
        if isinstance(effect, (flow.UnlockCache, flow.Sleep)):
            return None
        if isinstance(effect, flow.UpdateUserLogin):
            key = effect.identity.cache_key
            self.tokens[key] = refreshed_entry(
                self.tokens.get(key), effect.identity, effect.refreshed
            )
            return None
        if isinstance(effect, flow.Send):
            self.sent.append(effect.request)
            return self.answers[effect.request.what].pop(0)
        raise AssertionError(f"unexpected effect {effect!r}")

    def run(self) -> Any:
        resolution = flow.Resolution(USER, TARGET, CACHE, Deadline(30), FAST, lambda: NOW)
        steps = resolution.run()
        outcome = flow.Outcome()
        while not isinstance(step := flow.advance(steps, outcome), flow.Done):
            try:
                outcome = flow.Outcome(value=self.perform(step))
            except errors.MendaError as exc:
                outcome = flow.Outcome(error=exc)
        return step.value

    def refreshes(self) -> int:
        return sum(1 for r in self.sent if r.what == REFRESH_WHAT)


def refreshed(access: str = "new-access", rotated: str | None = "rotated-rt") -> HttpResponse:
    body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
    if rotated is not None:
        body["refresh_token"] = rotated
    return response(200, body)


def registry_ok() -> HttpResponse:
    return response(200, {"token": "caat", "expiration": "2027-01-15T20:00:00Z"})


def rejected() -> HttpResponse:
    return response(401, {"error": "invalid_token", "message": "expired or revoked"})


def test_an_expired_login_is_refreshed_under_the_lock_after_reading_again() -> None:
    other = {"access_token": "x", "expires_at": 1, "host": "h", "auth_type": "u2m"}
    cache = Cache(
        {"u2m:dev": entry(user="alice"), "u2m:other": other, "vendor:thing": {"a": [1]}},
        {REFRESH_WHAT: [refreshed()], "registry/token": [registry_ok()]},
    )
    assert cache.run().token == "caat"
    assert cache.effects == [
        "ReadCache",
        "LockCache",
        "ReadCache",
        "Send",
        "UpdateUserLogin",
        "UnlockCache",
        "Send",
    ]
    assert cache.sent[1].headers["Authorization"] == "Bearer new-access"
    assert cache.tokens["u2m:dev"] == {
        **entry(user="alice"),
        "access_token": "new-access",
        "expires_at": int(NOW) + 3600,
        "refresh_token": "rotated-rt",
    }
    assert cache.tokens["u2m:other"] == other and cache.tokens["vendor:thing"] == {"a": [1]}


def test_a_login_refreshed_by_another_process_meanwhile_is_not_refreshed_again() -> None:
    cache = Cache({"u2m:dev": entry()}, {"registry/token": [registry_ok()]})

    def someone_else_refreshed() -> None:
        cache.tokens["u2m:dev"] = entry(
            access_token="theirs", expires_at=int(NOW) + 3600, refresh_token="their-rotated-rt"
        )

    cache.between = someone_else_refreshed
    assert cache.run().token == "caat"
    assert cache.refreshes() == 0
    assert cache.effects == ["ReadCache", "LockCache", "ReadCache", "UnlockCache", "Send"]
    assert cache.sent[0].headers["Authorization"] == "Bearer theirs"


def test_a_usable_login_is_used_without_lock_or_refresh() -> None:
    cache = Cache({"u2m:dev": entry(expires_at=int(NOW) + 61)}, {"registry/token": [registry_ok()]})
    assert cache.run().token == "caat"
    assert cache.effects == ["ReadCache", "Send"]


def test_without_a_refresh_token_an_expired_login_is_no_login() -> None:
    cache = Cache({"u2m:dev": entry(refresh_token=DELETE)}, {})
    with pytest.raises(errors.NoCachedLoginError, match=r"No valid cached token.*menda auth login"):
        cache.run()
    assert cache.effects == ["ReadCache"]  # no lock taken for nothing


def test_a_rejected_access_token_is_refreshed_once_and_the_exchange_retried_once() -> None:
    usable = entry(expires_at=int(NOW) + 3600)
    cache = Cache(
        {"u2m:dev": usable},
        {REFRESH_WHAT: [refreshed()], "registry/token": [rejected(), registry_ok()]},
    )
    assert cache.run().token == "caat"
    assert cache.refreshes() == 1
    assert [r.headers.get("Authorization") for r in cache.sent if r.what != REFRESH_WHAT] == [
        "Bearer old-access",
        "Bearer new-access",
    ]
    twice = Cache(
        {"u2m:dev": usable},
        {REFRESH_WHAT: [refreshed()], "registry/token": [rejected(), rejected()]},
    )
    with pytest.raises(errors.MendaCloudAPIError, match="also with a freshly issued") as caught:
        twice.run()
    assert caught.value.status_code == 401 and twice.refreshes() == 1
    assert not isinstance(caught.value, errors.NoCachedLoginError)


def test_a_rejected_access_token_without_a_refresh_token_means_sign_in_again() -> None:
    cache = Cache(
        {"u2m:dev": entry(expires_at=int(NOW) + 3600, refresh_token=DELETE)},
        {"registry/token": [rejected()]},
    )
    with pytest.raises(errors.NoCachedLoginError, match="rejected the signed-in token"):
        cache.run()


@pytest.mark.parametrize("code", ["invalid_grant", "invalid_client"])
def test_a_refused_refresh_is_no_login_naming_the_code_and_the_entry_stays(code: str) -> None:
    before = entry(client_id="menda-cli")
    echo = {"error": code, "error_description": f"refresh token {RT} is dead"}
    cache = Cache({"u2m:dev": before}, {REFRESH_WHAT: [response(400, echo)]})
    with pytest.raises(errors.NoCachedLoginError) as caught:
        cache.run()
    message = str(caught.value)
    assert code in message and "Run menda auth login --profile dev" in message
    assert "No valid cached token for profile [dev]" in message
    assert RT not in message and RT[:12] not in message
    assert cache.tokens["u2m:dev"] == before and "UpdateUserLogin" not in cache.effects


@pytest.mark.parametrize(
    ("members", "needle"),
    [
        ({"refresh_token": 5}, "refresh_token is not a non-empty string"),
        ({"client_id": ["menda-cli"]}, "client_id is not a non-empty string"),
        ({"host": "https://evil.example"}, "a refresh token is sent only to the host"),
    ],
)
def test_an_entry_that_cannot_be_refreshed_is_a_typed_error_and_nothing_is_sent(
    members: dict[str, Any], needle: str
) -> None:
    before = entry(**members)
    cache = Cache({"u2m:dev": before}, {})
    with pytest.raises(errors.InvalidLoginEntryError, match=needle) as caught:
        cache.run()
    assert isinstance(caught.value, errors.NoCachedLoginError)  # caught as one, too
    assert "Run menda auth login --profile dev" in str(caught.value)
    assert cache.sent == [] and cache.tokens["u2m:dev"] == before


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer", "expires_in": 3600}, {"access_token": "a", "expires_in": 0}],
)
def test_a_bad_refresh_answer_is_a_typed_error_and_the_entry_stays(body: object) -> None:
    before = entry()
    cache = Cache({"u2m:dev": before}, {REFRESH_WHAT: [response(200, body)]})
    with pytest.raises(errors.MendaCloudAPIError, match="wrong shape"):
        cache.run()
    assert cache.tokens["u2m:dev"] == before


def test_a_busy_token_endpoint_is_retried_inside_the_ceiling() -> None:
    busy = response(503, {"error": "busy"})
    cache = Cache(
        {"u2m:dev": entry()},
        {REFRESH_WHAT: [busy, busy, refreshed(rotated=None)], "registry/token": [registry_ok()]},
    )
    assert cache.run().token == "caat"
    assert cache.refreshes() == 3 and cache.effects.count("Sleep") == 2
    assert cache.tokens["u2m:dev"]["refresh_token"] == RT  # not rotated: the old one stays


def test_waiting_for_the_lock_counts_against_the_ceiling() -> None:
    cache = Cache({"u2m:dev": entry()}, {})
    cache.lock_free = False
    with pytest.raises(errors.ResolutionTimeoutError, match="token cache lock"):
        cache.run()
    assert cache.sent == []


def test_the_refresh_is_sent_with_the_entrys_client_id() -> None:
    cache = Cache(
        {"u2m:dev": entry(client_id="menda-vscode")},
        {REFRESH_WHAT: [refreshed()], "registry/token": [registry_ok()]},
    )
    cache.run()
    assert parse_qs(cache.sent[0].body.decode())["client_id"] == ["menda-vscode"]
    assert cache.sent[0].url == HOST + "/oauth2/token"


def test_the_update_effect_shows_no_token() -> None:
    access = AccessToken("new-access-token-secret", NOW + 60, HOST, "u2m")
    effect = flow.UpdateUserLogin(CACHE, USER, RefreshedLogin(access, RT), "previous-token")
    assert RT not in repr(effect) and "previous-token" not in repr(effect)
    assert "new-access-token-secret" not in repr(effect)
