"""The menda-cloud protocol without I/O: requests built, responses judged."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from menda_keyring import errors
from menda_keyring.cloud_protocol import (
    USER_AGENT,
    HttpResponse,
    oauth_request,
    parse_oauth_response,
    parse_registry_response,
    parse_retry_after,
    parse_rfc3339,
    registry_request,
)
from menda_keyring.errors import AccessTokenRejected, TransientError
from menda_keyring.identity import Identity
from menda_keyring.retry import RetryPolicy
from menda_keyring.urls import RegistryTarget

SECRET = "sentinel-secret-abc"
TOKEN = "sentinel-registry-token-xyz"
MACHINE = Identity("env", "m2m", "https://gw.corp/menda", "m2m:client:bot", None, "bot", SECRET)
USER = Identity("profile", "u2m", "https://api.example", "u2m:dev", "dev")
TARGET = RegistryTarget("menda-private", "058264169513", "eu-west-1")
NOW = 1_800_000_000.0


def response(status: int, body: object = b"", **headers: str) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {k.replace("_", "-").lower(): v for k, v in headers.items()}, raw)


def test_oauth_request_follows_rfc6749_client_credentials() -> None:
    request = oauth_request(MACHINE)
    assert request.method == "POST"
    assert request.url == "https://gw.corp/menda/oauth2/token"
    assert parse_qs(request.body.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": ["bot"],
        "client_secret": [SECRET],
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("menda-keyring/")
    assert SECRET not in repr(request)


def test_registry_request_names_domain_owner_region() -> None:
    request = registry_request("https://api.example", "menda-token", TARGET)
    assert request.url == "https://api.example/api/v1/auth/registry/token"
    assert request.headers["Authorization"] == "Bearer menda-token"
    assert request.headers["User-Agent"] == USER_AGENT
    assert json.loads(request.body) == {
        "registry": "codeartifact",
        "domain": "menda-private",
        "domain_owner": "058264169513",
        "region": "eu-west-1",
    }
    assert "menda-token" not in repr(request)


def test_oauth_success_gives_expiring_token() -> None:
    token = parse_oauth_response(
        response(200, {"access_token": "abc", "token_type": "Bearer", "expires_in": 3600, "x": 1}),
        MACHINE,
        NOW,
    )
    assert token.expires_at == NOW + 3600 and token.host == MACHINE.host
    assert token.usable(NOW + 3539) and not token.usable(NOW + 3541)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        {"access_token": "", "expires_in": 10},
        {"access_token": "a", "expires_in": 0},
        {"access_token": "a", "expires_in": "3600"},
        {"access_token": "a", "expires_in": True},
        {"access_token": "a", "expires_in": 5, "token_type": "mac"},
        ["not", "an", "object"],
    ],
)
def test_oauth_bad_bodies_are_typed_errors(body: object) -> None:
    with pytest.raises(errors.MendaCloudAPIError) as caught:
        parse_oauth_response(response(200, body), MACHINE, NOW)
    assert caught.value.status_code == 200


def test_oauth_rejection_names_identity_not_secret() -> None:
    with pytest.raises(errors.MendaCloudAPIError) as caught:
        parse_oauth_response(
            response(401, {"error": "invalid_client", "error_description": "bad client"}),
            MACHINE,
            NOW,
        )
    assert caught.value.status_code == 401
    assert "invalid_client" in str(caught.value) and "bot" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_carry_retry_after(status: int) -> None:
    with pytest.raises(TransientError) as caught:
        parse_registry_response(response(status, b"busy", retry_after="7"), MACHINE, TARGET, NOW)
    assert caught.value.retry_after == 7.0 and caught.value.status_code == status


def test_registry_success_and_default_username() -> None:
    token = parse_registry_response(
        response(200, {"token": TOKEN, "expiration": "2027-01-15T20:00:00Z"}), MACHINE, TARGET, NOW
    )
    assert token.username == "aws" and token.token == TOKEN
    assert token.expires_at == NOW + 12 * 3600
    assert TOKEN not in repr(token)


def test_registry_401_means_a_new_access_token_for_machines_and_users_alike() -> None:
    """The flow decides what follows (OAuth, a refresh, or "sign in again")."""
    with pytest.raises(AccessTokenRejected, match="rejected the machine token"):
        parse_registry_response(response(401, {"error": "invalid_token"}), MACHINE, TARGET, NOW)
    with pytest.raises(AccessTokenRejected, match="rejected the signed-in token of profile dev"):
        parse_registry_response(response(401, {"error": "invalid_token"}), USER, TARGET, NOW)


@pytest.mark.parametrize(("status", "needle"), [(403, "may not use"), (404, "no CodeArtifact")])
def test_registry_403_404_fail_at_once(status: int, needle: str) -> None:
    with pytest.raises(errors.MendaCloudAPIError) as caught:
        parse_registry_response(
            response(status, {"error": "x", "message": "m"}), MACHINE, TARGET, NOW
        )
    assert not isinstance(caught.value, TransientError)
    assert caught.value.status_code == status and needle in str(caught.value)
    assert "menda-private-058264169513" in str(caught.value)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        {"token": TOKEN},
        {"token": TOKEN, "expiration": "tomorrow"},
        {"token": 5, "expiration": "2027-01-15T08:00:00Z"},
        {"token": TOKEN, "expiration": "2020-01-01T00:00:00Z"},  # already expired
    ],
)
def test_registry_bad_bodies_are_typed_errors_without_the_token(body: object) -> None:
    with pytest.raises(errors.MendaCloudAPIError) as caught:
        parse_registry_response(response(200, body), MACHINE, TARGET, NOW)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T13:00:00Z", 1795957200.0),
        ("2026-11-29T14:00:00+01:00", 1795957200.0),
        ("2026-11-29T13:00:00.250Z", 1795957200.25),
        ("2026-11-29t13:00:00z", 1795957200.0),
        ("2026-11-29 13:00:00Z", 1795957200.0),
        ("2026-11-29T13:00:00", None),
        ("2026-13-29T13:00:00Z", None),
        ("yesterday", None),
    ],
)
def test_rfc3339(text: str, expected: float | None) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), (" 0 ", 0.0), ("-1", None), ("x", None), (None, None), ("99999", 3600.0)],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_backoff_is_capped_jittered_and_bounded_by_deadline() -> None:
    policy = RetryPolicy(max_attempts=4, base=0.25, cap=1.0)
    assert policy.delay(1, None, 30, rand=lambda: 1.0) == 0.25
    assert policy.delay(3, None, 30, rand=lambda: 1.0) == 1.0
    assert policy.delay(3, None, 30, rand=lambda: 0.0) == 0.0
    assert policy.delay(4, None, 30, rand=lambda: 0.5) is None  # attempts used up
    assert policy.delay(1, 2.0, 30, rand=lambda: 0.0) == 2.0  # Retry-After honoured
    assert policy.delay(1, 20.0, 5, rand=lambda: 0.0) is None  # would pass the ceiling


def test_retry_after_is_a_floor_with_the_jittered_step_on_top() -> None:
    policy = RetryPolicy(max_attempts=4, base=0.25, cap=1.0)
    # Callers told the same Retry-After spread over the backoff step, which grows with
    # every refusal: a constant "Retry-After: 1" does not bring them back in lock-step.
    assert policy.delay(1, 1.0, 30, rand=lambda: 1.0) == 1.25
    assert policy.delay(2, 1.0, 30, rand=lambda: 1.0) == 1.5
    assert policy.delay(3, 1.0, 30, rand=lambda: 0.5) == 1.5
    waits = {policy.delay(1, 1.0, 30, rand=lambda r=r: r / 10) for r in range(10)}
    assert len(waits) == 10 and min(w for w in waits if w) >= 1.0
