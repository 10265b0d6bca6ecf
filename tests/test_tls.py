"""menda-cloud over HTTPS: certificates verified, SSL_CERT_FILE honoured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.fakes.tls_front import tls_front
from tests.support.env import m2m_env
from tests.support.procs import keyring_get


@pytest.fixture
def https_cloud(cloud: FakeMendaCloud, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server = tls_front(cloud, ca)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}", ca_pem
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_certificate_is_refused_at_once(
    cloud: FakeMendaCloud, home: Path, https_cloud: tuple[str, Path]
) -> None:
    url, _ = https_cloud
    env = m2m_env(home, cloud, MENDA_HOST=url, MENDA_CREDD="off")
    env["SSL_CERT_FILE"] = "/nonexistent-ca.pem"
    result = keyring_get(env)
    assert result.returncode != 0
    assert "TLS certificate verification failed" in result.stderr
    assert "MendaCloudAPIError" in result.stderr
    assert cloud.counts()["oauth"] == 0  # nothing reached menda-cloud, and no retries


def test_ssl_cert_file_is_honoured(
    cloud: FakeMendaCloud, home: Path, https_cloud: tuple[str, Path]
) -> None:
    url, ca_pem = https_cloud
    env = m2m_env(home, cloud, MENDA_HOST=url, MENDA_CREDD="off", SSL_CERT_FILE=str(ca_pem))
    result = keyring_get(env)
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip())
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 1, "registry_ok": 1}
