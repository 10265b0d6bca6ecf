"""Which certificates verify menda-cloud: the decision, and the contexts it makes."""

from __future__ import annotations

import ssl

import pytest
import truststore

from menda_keyring.tls import client_context, trust_source

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("env", "source"),
    [
        ({}, "system"),
        ({"SSL_CERT_FILE": ""}, "system"),
        ({"SSL_CERT_FILE": "/etc/corp-ca.pem"}, "environment"),
        ({"SSL_CERT_DIR": "/etc/corp-certs"}, "environment"),
        ({"REQUESTS_CA_BUNDLE": "/etc/corp-ca.pem"}, "system"),  # requests' own, not OpenSSL's
    ],
)
def test_the_environment_names_the_certificates_or_the_system_does(
    env: dict[str, str], source: str
) -> None:
    assert trust_source(env) == source


def test_the_system_store_is_truststore_and_verifies() -> None:
    context = client_context({})
    # truststore's context asks the Security framework (macOS) or the certificate store
    # (Windows) for every chain; on Linux it reads OpenSSL's default bundle (test_tls.py).
    assert isinstance(context, truststore.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_named_certificates_are_openssls_and_verify() -> None:
    context = client_context({"SSL_CERT_FILE": "/nonexistent.pem"})
    assert not isinstance(context, truststore.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
