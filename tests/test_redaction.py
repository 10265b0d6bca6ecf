"""Redaction: no secret, no encoded form of one and no long fragment of one survives in an
error message, however menda-cloud (or a gateway) echoes it back; messages stay short."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from menda_keyring import errors
from menda_keyring.errors import FRAGMENT, MAX_MESSAGE, MendaCloudAPIError, redact
from menda_keyring.in_process import InProcessResolver
from menda_keyring.retry import RetryPolicy
from menda_keyring.urls import parse_codeartifact_service
from tests.fakes.menda_cloud import FakeMendaCloud
from tests.support.env import CA_URL, CLIENT_ID, base_env, write_profile, write_user_token

TARGET = parse_codeartifact_service(CA_URL)
ONE_TRY = RetryPolicy(max_attempts=1, base=0.01, cap=0.01)
SPECIAL = "Sx+y/z=w&q%2"
ALPHABET = string.ascii_letters + string.digits + "+/=&%"


def long_secret(length: int = 300) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def leaks(message: str, secret: str) -> list[str]:
    """Every form of ``secret``, and every ``FRAGMENT``-long piece of one, found in ``message``."""
    found = []
    for form in errors.secret_forms(secret) | {secret}:
        if form in message:
            found.append(form)
        found.extend(
            form[i : i + FRAGMENT]
            for i in range(len(form) - FRAGMENT + 1)
            if form[i : i + FRAGMENT] in message
        )
    return found


def redacted(message: str, *secrets_: str) -> str:
    return redact(MendaCloudAPIError(message, 400), secrets_).message


# -- unit tests of redact -----------------------------------------------------------------


@pytest.mark.parametrize(
    "echo",
    [
        SPECIAL,
        quote_plus(SPECIAL),  # Sx%2By%2Fz%3Dw%26q%252
        quote(SPECIAL),
        quote(SPECIAL, safe=""),
        json.dumps(SPECIAL)[1:-1],
    ],
    ids=["raw", "form", "percent", "percent-all", "json"],
)
def test_every_encoded_form_of_a_secret_is_blanked(echo: str) -> None:
    message = redacted(f"invalid_client - bad client_secret={echo}; try again", SPECIAL)
    assert echo not in message
    assert message == "invalid_client - bad client_secret=***; try again"


def test_a_json_escaped_secret_with_quotes_and_backslashes_is_blanked() -> None:
    secret = 'ab"cd\\ef\u00e9gh'
    echo = json.dumps(secret)[1:-1]
    assert echo != secret
    assert redacted(f"got {echo} from you", secret) == "got *** from you"


def test_long_fragments_of_a_secret_are_blanked_short_ones_are_not() -> None:
    secret = long_secret()
    part = secret[40 : 40 + FRAGMENT]
    message = redacted(
        f"prefix {secret[100:250]} middle {part} end {secret[: FRAGMENT - 1]}", secret
    )
    assert secret[100:250] not in message and part not in message
    assert message.startswith("prefix *** middle *** end ")
    # Eleven characters are not proof of a leak (they would blank ordinary words).
    assert message.endswith(secret[: FRAGMENT - 1])


def test_the_cut_comes_after_the_blanking_and_keeps_messages_short() -> None:
    secret = long_secret()
    message = redacted("x" * 185 + secret + "y" * 2000, secret)
    assert leaks(message, secret) == []
    assert len(message) <= MAX_MESSAGE
    assert message.startswith("x" * 185 + "***" + "y")
    assert message.endswith("...")


def test_redact_keeps_the_type_and_status_and_ignores_short_secrets() -> None:
    error = MendaCloudAPIError("token abc leaked, and ab too", 403)
    assert redact(error, ("abc", "", "ab")) is error
    assert error.message == "token abc leaked, and ab too"
    error = MendaCloudAPIError("token abcd leaked", 403)
    redact(error, ("abcd",))
    assert (str(error), error.args, error.status_code) == (
        "token *** leaked",
        ("token *** leaked",),
        403,
    )


# -- in process, against the fake menda-cloud ---------------------------------------------


def resolve_error(env: dict[str, str]) -> errors.MendaError:
    assert TARGET is not None
    with pytest.raises(errors.MendaError) as caught:
        InProcessResolver(env, policy=ONE_TRY).resolve(TARGET)
    return caught.value


@pytest.mark.parametrize("secret", [SPECIAL, long_secret()], ids=["special", "300-chars"])
def test_an_echoed_client_secret_never_reaches_the_message(
    cloud: FakeMendaCloud, home: Path, secret: str
) -> None:
    cloud.add_client(CLIENT_ID, secret)
    description = (
        f"{'p' * 120}{quote_plus(secret)} raw={secret} json={json.dumps(secret)[1:-1]} "
        f"cut={secret[30:230]}"
    )
    cloud.inject(
        "oauth", status=401, body={"error": "invalid_client", "error_description": description}
    )
    env = base_env(
        home, MENDA_CLIENT_ID=CLIENT_ID, MENDA_CLIENT_SECRET=secret, MENDA_HOST=cloud.url
    )
    error = resolve_error(env)
    assert isinstance(error, MendaCloudAPIError) and error.status_code == 401
    assert "invalid_client" in error.message
    assert leaks(error.message, secret) == [], error.message
    assert len(error.message) <= MAX_MESSAGE


def test_a_403_with_a_long_prefix_does_not_leak_part_of_the_access_token(
    cloud: FakeMendaCloud, home: Path
) -> None:
    write_profile(home, f"[default]\nhost = {cloud.url}\n")
    token, expires_at = cloud.issue_user_token("alice", 3600)
    write_user_token(home, "default", token, expires_at, cloud.url)
    body = {"error": "forbidden", "error_description": "q" * 178 + f"Bearer {token} denied"}
    cloud.inject("registry", status=403, body=body)
    error = resolve_error({"HOME": str(home)})
    assert isinstance(error, MendaCloudAPIError) and error.status_code == 403
    assert leaks(error.message, token) == [], error.message
    assert "Bearer *** denied" in error.message
