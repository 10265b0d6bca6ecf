"""menda-cloud over HTTPS: certificates verified, the system's trust store, SSL_CERT_FILE."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.fakes.menda_cloud import FakeMendaCloud
from tests.fakes.tls_front import tls_front
from tests.support.env import CA_URL, KEYRING, base_env, m2m_env
from tests.support.procs import keyring_get, run


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


# -- the system's trust store -------------------------------------------------------------
#
# With neither SSL_CERT_FILE nor SSL_CERT_DIR set, menda-cloud is verified against the
# operating system's trust store (truststore; on Linux OpenSSL's compiled-in default
# bundle). To show that a CA installed only there is trusted, without touching the real
# file, each probe runs in its own user and mount namespace (``unshare -rm``) in which a
# copy of the system bundle, with or without our throw-away CA appended, is bind-mounted
# over the system bundle's path: what the process sees is what a machine with that CA
# installed by the administrator would hold, and nothing of it is in the environment.

PROBE = textwrap.dedent(
    """
    import asyncio, json, sys
    from menda_keyring.cloud_protocol import HttpRequest
    from menda_keyring import http_sync
    from menda_credd.http_async import AsyncSender

    request = HttpRequest("POST", sys.argv[1] + "/oauth2/token", {}, b"", "oauth2/token")

    def outcome(send):
        try:
            return f"answered {send().status}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"

    async def send_async():
        sender = AsyncSender()
        try:
            return await sender.send(request, 10.0)
        finally:
            await sender.close()

    found = {"sync": outcome(lambda: http_sync.send(request, 10.0))}
    if "async" in sys.argv[2:]:
        found["async"] = outcome(lambda: asyncio.run(send_async()))
    print(json.dumps(found))
    """
)


#: The daemon's transport (asyncio) only where a daemon can run: not under the Windows
#: emulation of tests/test_windows_emulation.py, which removes AF_UNIX.
TRANSPORTS = ("sync", "async") if hasattr(socket, "AF_UNIX") else ("sync",)
ANSWERED = dict.fromkeys(TRANSPORTS, "answered 400")


def system_bundle() -> Path:
    """The file OpenSSL reads when nothing names another (not the environment's choice)."""
    return Path(os.path.realpath(ssl.get_default_verify_paths().openssl_cafile))


@pytest.fixture(scope="module")
def namespaces() -> None:
    if not system_bundle().is_file():
        pytest.skip(f"no system CA bundle at {system_bundle()}")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) (util-linux) for a private mount namespace")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces unavailable here: {probe.stderr.strip()}")


def with_system_bundle(bundle: Path, command: list[str]) -> list[str]:
    """``command`` in a namespace where the system bundle's path holds ``bundle``."""
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    return ["unshare", "-rm", "sh", "-c", script, "sh", str(bundle), str(system_bundle()), *command]


@pytest.fixture
def bundles(tmp_path: Path, https_cloud: tuple[str, Path]) -> tuple[Path, Path]:
    """Copies of the system bundle: without our CA, and with it appended (as installed)."""
    _, ca_pem = https_cloud
    plain = tmp_path / "system-plain.pem"
    plain.write_bytes(system_bundle().read_bytes())
    with_ca = tmp_path / "system-with-ca.pem"
    with_ca.write_bytes(plain.read_bytes() + b"\n" + ca_pem.read_bytes())
    return plain, with_ca


def probe(url: str, bundle: Path, home: Path, **env: str) -> dict[str, str]:
    command = with_system_bundle(bundle, [sys.executable, "-c", PROBE, url, *TRANSPORTS])
    return json.loads(run(command, base_env(home, **env)).check().stdout)


@pytest.mark.usefixtures("namespaces")
def test_a_ca_installed_only_in_the_system_store_is_trusted(
    cloud: FakeMendaCloud, home: Path, https_cloud: tuple[str, Path], bundles: tuple[Path, Path]
) -> None:
    url, _ = https_cloud
    plain, with_ca = bundles
    assert probe(url, with_ca, home) == ANSWERED
    # The control: the same machine without that CA refuses, on both paths.
    refused = probe(url, plain, home)
    for path in TRANSPORTS:
        assert refused[path].startswith("MendaCloudAPIError: "), refused
        assert "TLS certificate verification failed" in refused[path], refused
    # And the real keyring CLI, in process, as uv calls it.
    env = m2m_env(home, cloud, MENDA_HOST=url, MENDA_CREDD="off")
    result = run(with_system_bundle(with_ca, [KEYRING, "get", CA_URL, "aws"]), env)
    assert result.returncode == 0, result.stderr
    assert cloud.is_valid_registry_token(result.stdout.strip())


@pytest.mark.usefixtures("namespaces")
def test_ssl_cert_file_overrides_the_system_store(
    home: Path, https_cloud: tuple[str, Path], bundles: tuple[Path, Path]
) -> None:
    url, ca_pem = https_cloud
    plain, with_ca = bundles
    # Given only in SSL_CERT_FILE: trusted by both transports.
    assert probe(url, plain, home, SSL_CERT_FILE=str(ca_pem)) == ANSWERED
    # Named explicitly, it is all that is trusted: the system's CA is not added to it.
    refused = probe(url, with_ca, home, SSL_CERT_FILE=str(plain), SSL_CERT_DIR=str(home))
    assert set(refused) == set(TRANSPORTS)
    assert all("TLS certificate verification failed" in v for v in refused.values()), refused
