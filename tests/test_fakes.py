"""The fakes follow docs/menda-cloud-api.md, and real uv/pip install through them."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.codeartifact_index import FakeCodeArtifactIndex
from tests.fakes.https_proxy import DEFAULT_HOST, FakeHttpsProxy
from tests.fakes.menda_cloud import FakeCloudControl, FakeMendaCloud
from tests.fakes.wheels import GREETING, build_wheel
from tests.fakes.world import FakeWorld
from tests.support.procs import run

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID, CLIENT_SECRET = "ci-client", "ci-secret"
EXCHANGE = {
    "registry": "codeartifact",
    "domain": "menda-private",
    "domain_owner": "058264169513",
    "region": "eu-west-1",
}


# -- helpers -----------------------------------------------------------------------------


class Resp:
    """A fully read HTTP response."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Resp:
    """One request on a fresh connection (never through an environment proxy)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path or "/", body=body, headers=headers or {})
        resp = conn.getresponse()
        return Resp(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def oauth(base: str, **form: str) -> Resp:
    fields = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
    fields["client_secret"] = CLIENT_SECRET
    fields.update(form)
    data = urllib.parse.urlencode({k: v for k, v in fields.items() if v is not None}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    return request(f"{base}/oauth2/token", "POST", data, headers)


def machine_token(base: str) -> str:
    resp = oauth(base)
    assert resp.status == 200, resp.body
    return resp.json()["access_token"]


def exchange(
    base: str,
    token: str | None,
    payload: Any = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = 5.0,
) -> Resp:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = raw if raw is not None else json.dumps(EXCHANGE if payload is None else payload).encode()
    return request(f"{base}/api/v1/auth/registry/token", "POST", body, headers, timeout)


def parse_rfc3339(text: str) -> float:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00").timestamp()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def cloud() -> Iterator[FakeMendaCloud]:
    with FakeMendaCloud() as fake:
        fake.add_client(CLIENT_ID, CLIENT_SECRET)
        yield fake


# -- section 1: OAuth2 -------------------------------------------------------------------


def test_oauth_client_credentials_success(cloud: FakeMendaCloud) -> None:
    resp = oauth(cloud.url)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("mat_") and len(body["access_token"]) > 20
    assert cloud.access_token_identity(body["access_token"]) == f"client:{CLIENT_ID}"
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 0, "registry_ok": 0}


def test_oauth_lifetime_is_configurable(cloud: FakeMendaCloud) -> None:
    cloud.configure(machine_token_lifetime=120)
    assert oauth(cloud.url).json()["expires_in"] == 120


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "password"}, 400, "invalid_request"),
        ({"grant_type": None}, 400, "invalid_request"),
        ({"client_secret": None}, 400, "invalid_request"),
        ({"client_id": None}, 400, "invalid_request"),
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody"}, 401, "invalid_client"),
    ],
)
def test_oauth_errors(cloud: FakeMendaCloud, form: dict[str, str], status: int, error: str) -> None:
    resp = oauth(cloud.url, **form)
    assert resp.status == status
    body = resp.json()
    assert body["error"] == error and body["error_description"]
    assert cloud.counts()["oauth"] == 1 and cloud.counts()["oauth_ok"] == 0


def test_oauth_requires_form_body(cloud: FakeMendaCloud) -> None:
    body = json.dumps({"grant_type": "client_credentials"}).encode()
    resp = request(f"{cloud.url}/oauth2/token", "POST", body, {"Content-Type": "application/json"})
    assert resp.status == 400 and resp.json()["error"] == "invalid_request"
    assert request(f"{cloud.url}/oauth2/token").status == 405


# -- section 2: registry token exchange --------------------------------------------------


def test_registry_exchange_success(cloud: FakeMendaCloud) -> None:
    before = time.time()
    resp = exchange(cloud.url, machine_token(cloud.url))
    assert resp.status == 200
    body = resp.json()
    assert body["username"] == "aws" and body["token"].startswith("caat_")
    lifetime = parse_rfc3339(body["expiration"]) - before
    assert 43200 - 2 <= lifetime <= 43200 + 1
    assert cloud.is_valid_registry_token(body["token"])
    assert cloud.is_valid_registry_token(body["token"], "menda-private")
    assert not cloud.is_valid_registry_token(body["token"], "other-domain")
    assert not cloud.is_valid_registry_token("caat_forged")
    [issued] = cloud.registry_tokens()
    assert issued["token"] == body["token"]
    assert issued["identity"] == f"client:{CLIENT_ID}" and issued["region"] == "eu-west-1"
    assert cloud.counts() == {"oauth": 1, "oauth_ok": 1, "registry": 1, "registry_ok": 1}


def test_registry_exchange_with_user_token_and_short_lifetime(cloud: FakeMendaCloud) -> None:
    cloud.configure(registry_token_lifetime=8)
    token, expires_at = cloud.issue_user_token("bob", lifetime=600)
    assert token.startswith("mut_") and isinstance(expires_at, int)
    assert 598 <= expires_at - time.time() <= 601
    now = time.time()
    body = exchange(cloud.url, token).json()
    assert 6 <= parse_rfc3339(body["expiration"]) - now <= 8
    assert cloud.registry_tokens()[0]["identity"] == "user:bob"


def test_registry_401_invalid_token(cloud: FakeMendaCloud) -> None:
    clock = [time.time()]
    cloud.clock = lambda: clock[0]
    good = machine_token(cloud.url)
    revoked = machine_token(cloud.url)
    assert cloud.revoke(revoked) and not cloud.revoke("mat_unknown")
    user, _ = cloud.issue_user_token(lifetime=10)
    for token in (None, "", "mat_unknown", revoked):
        resp = exchange(cloud.url, token)
        assert resp.status == 401, token
        assert resp.json()["error"] == "invalid_token" and resp.json()["message"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert exchange(cloud.url, user).status == 200
    clock[0] += 11  # the user token is now expired, the machine one is not
    assert exchange(cloud.url, user).status == 401
    assert exchange(cloud.url, good).status == 200
    assert cloud.revoke_all() == 3
    assert exchange(cloud.url, good).status == 401


def test_registry_403_and_404(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    cloud.forbid(f"client:{CLIENT_ID}", "menda-private")
    resp = exchange(cloud.url, token)
    assert resp.status == 403 and resp.json()["error"] == "forbidden"
    cloud.allow(f"client:{CLIENT_ID}", "menda-private")
    assert exchange(cloud.url, token).status == 200
    for change in ({"domain": "nope"}, {"domain_owner": "111111111111"}):
        resp = exchange(cloud.url, token, {**EXCHANGE, **change})
        assert resp.status == 404 and resp.json()["error"] == "unknown_registry"
    cloud.add_domain("nope", "111111111111")
    other = {**EXCHANGE, "domain": "nope", "domain_owner": "111111111111"}
    assert exchange(cloud.url, token, other).status == 200


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"raw": b"{not json"},
        {"raw": b"[1, 2]"},
        {"payload": {**EXCHANGE, "registry": "npm"}},
        {"payload": {k: v for k, v in EXCHANGE.items() if k != "region"}},
        {"payload": {**EXCHANGE, "domain": 7}},
        {"payload": EXCHANGE, "content_type": "text/plain"},
    ],
)
def test_registry_400_invalid_request(cloud: FakeMendaCloud, kwargs: dict[str, Any]) -> None:
    resp = exchange(cloud.url, machine_token(cloud.url), **kwargs)
    assert resp.status == 400 and resp.json()["error"] == "invalid_request"


def test_prefix_mount(cloud: FakeMendaCloud) -> None:
    with FakeMendaCloud(prefix="/menda/") as gw:
        gw.add_client(CLIENT_ID, CLIENT_SECRET)
        assert gw.url.endswith("/menda")
        assert exchange(gw.url, machine_token(gw.url)).status == 200
        base = gw.url[: -len("/menda")]
        assert oauth(base).status == 404
        assert FakeCloudControl(gw.url).counts()["registry_ok"] == 1


def test_keep_alive_and_64_concurrent_clients(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    conn = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    for _ in range(3):
        conn.request("POST", "/api/v1/auth/registry/token", json.dumps(EXCHANGE), headers)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
    conn.close()

    n = 64
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    conns = [http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=10) for _ in range(n)]

    def worker(c: http.client.HTTPConnection) -> None:
        c.connect()
        barrier.wait()
        c.request("POST", "/api/v1/auth/registry/token", json.dumps(EXCHANGE), headers)
        r = c.getresponse()
        r.read()
        statuses.append(r.status)
        c.close()

    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert statuses == [200] * n
    assert cloud.counts()["registry_ok"] == n + 3


# -- fault injection ---------------------------------------------------------------------


def test_fault_status_retry_after_times_and_fifo(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    cloud.reset_counts()
    cloud.inject("registry", status=503, retry_after=2, times=2)
    cloud.inject("registry", status=429)
    for _ in range(2):
        resp = exchange(cloud.url, token)
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        assert resp.json()["error"] and resp.json()["message"]
    resp = exchange(cloud.url, token)
    assert resp.status == 429 and resp.headers["Retry-After"] is None
    assert exchange(cloud.url, token).status == 200
    assert cloud.counts() == {"oauth": 0, "oauth_ok": 0, "registry": 4, "registry_ok": 1}


def test_fault_custom_bodies(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    cloud.inject("registry", status=502, body="<html>bad gateway</html>")
    cloud.inject("registry", status=200, body='{"tok": 1}')
    cloud.inject("registry", status=500, body="oops", content_type="application/json")
    cloud.inject("oauth", status=401)
    resp = exchange(cloud.url, token)
    assert resp.status == 502 and resp.body == b"<html>bad gateway</html>"
    assert resp.headers["Content-Type"].startswith("text/plain")
    resp = exchange(cloud.url, token)
    assert resp.status == 200 and resp.json() == {"tok": 1}
    resp = exchange(cloud.url, token)
    assert resp.status == 500 and resp.headers["Content-Type"] == "application/json"
    resp = oauth(cloud.url)
    assert resp.status == 401 and resp.json()["error"] == "invalid_client"
    assert "error_description" in resp.json()
    cloud.inject("oauth", status=500, times=5)
    cloud.clear_faults()
    assert oauth(cloud.url).status == 200


def test_fault_delay_times_out_a_client(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    cloud.inject("registry", delay=1.0)
    with pytest.raises(TimeoutError):
        exchange(cloud.url, token, timeout=0.2)
    cloud.inject("registry", delay=0.3)
    start = time.monotonic()
    assert exchange(cloud.url, token).status == 200  # a delay alone still answers normally
    assert time.monotonic() - start >= 0.3


def test_fault_close_drops_connection(cloud: FakeMendaCloud) -> None:
    token = machine_token(cloud.url)
    cloud.inject("registry", close=True)
    cloud.inject("oauth", close=True)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        exchange(cloud.url, token)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        oauth(cloud.url)
    assert exchange(cloud.url, token).status == 200


def test_fault_expired_tokens(cloud: FakeMendaCloud) -> None:
    cloud.inject("oauth", expired=True)
    body = oauth(cloud.url).json()
    assert body["expires_in"] == 1
    token = machine_token(cloud.url)
    cloud.inject("registry", expired=True)
    now = time.time()
    resp = exchange(cloud.url, token)
    assert resp.status == 200
    assert parse_rfc3339(resp.json()["expiration"]) < now
    assert not cloud.is_valid_registry_token(resp.json()["token"])


def test_inject_rejects_unknown_endpoint(cloud: FakeMendaCloud) -> None:
    with pytest.raises(ValueError):
        cloud.inject("index", status=500)


# -- control plane -----------------------------------------------------------------------


def test_control_client_matches_in_process_api(cloud: FakeMendaCloud) -> None:
    ctl = FakeCloudControl(cloud.url)
    ctl.add_client("remote", "remote-secret")
    resp = oauth(cloud.url, client_id="remote", client_secret="remote-secret")
    assert resp.status == 200
    ctl.configure(registry_token_lifetime=900)
    user, expires_at = ctl.issue_user_token("carol", lifetime=300)
    assert cloud.access_token_identity(user) == "user:carol" and expires_at > time.time()
    now = time.time()
    body = exchange(cloud.url, user).json()
    assert 898 <= parse_rfc3339(body["expiration"]) - now <= 900
    assert ctl.is_valid_registry_token(body["token"], "menda-private")
    assert not ctl.is_valid_registry_token(body["token"], "elsewhere")
    assert [t["identity"] for t in ctl.registry_tokens()] == ["user:carol"]
    assert (
        ctl.counts()
        == cloud.counts()
        == {
            "oauth": 1,
            "oauth_ok": 1,
            "registry": 1,
            "registry_ok": 1,
        }
    )
    ctl.inject("registry", status=503, retry_after=7, times=2)
    assert cloud.pending_faults("registry") == 2
    assert exchange(cloud.url, user).headers["Retry-After"] == "7"
    ctl.clear_faults()
    ctl.forbid("user:carol", "menda-private")
    assert exchange(cloud.url, user).status == 403
    ctl.allow("user:carol", "menda-private")
    assert ctl.revoke(user) and not ctl.revoke("nope")
    assert exchange(cloud.url, user).status == 401
    ctl.reset_counts()
    assert cloud.counts()["registry"] == 0
    with pytest.raises(RuntimeError):
        ctl.inject("bogus", status=500)
    with pytest.raises(RuntimeError):
        ctl.add_client("x")  # no secret
    with pytest.raises(AttributeError):
        ctl.start  # noqa: B018 - not something another process may call


# -- wheels and the index ----------------------------------------------------------------


def test_build_wheel_has_a_correct_record(tmp_path: Path) -> None:
    path = build_wheel(tmp_path, "Menda.Hello", "1.2.3")
    assert path.name == "menda_hello-1.2.3-py3-none-any.whl"
    assert build_wheel(tmp_path / "again", "Menda.Hello", "1.2.3").read_bytes() == path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        record = zf.read("menda_hello-1.2.3.dist-info/RECORD").decode().splitlines()
        names = set(zf.namelist())
        assert "Metadata-Version: 2.1" in zf.read("menda_hello-1.2.3.dist-info/METADATA").decode()
        assert GREETING in zf.read("menda_hello/__init__.py").decode()
        listed = set()
        for line in record:
            arc, digest, size = line.rsplit(",", 2)
            listed.add(arc)
            if arc.endswith("RECORD"):
                assert digest == size == ""
                continue
            data = zf.read(arc)
            raw = hashlib.sha256(data).digest()
            assert digest == "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            assert int(size) == len(data)
    assert listed == names


@pytest.fixture
def index(cloud: FakeMendaCloud) -> Iterator[FakeCodeArtifactIndex]:
    with FakeCodeArtifactIndex(cloud.is_valid_registry_token) as idx:
        yield idx


def test_index_requires_a_cloud_issued_token(
    cloud: FakeMendaCloud, index: FakeCodeArtifactIndex
) -> None:
    url = index.simple_url("any-repo")
    for headers in ({}, basic("aws", "caat_forged"), {"Authorization": "Bearer x"}):
        resp = request(url, headers=headers)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="codeartifact"'
    token = exchange(cloud.url, machine_token(cloud.url)).json()["token"]
    assert request(url, headers=basic("someone", token)).status == 401
    other_host = {**basic("aws", token), "Host": DEFAULT_HOST.replace("menda-private", "other")}
    assert request(url, headers=other_host).status == 401
    assert index.counts() == {"authorized": 0, "unauthorized": 5, "downloads": 0, "uploads": 0}

    auth = basic("aws", token)
    resp = request(url, headers=auth)
    assert resp.status == 200 and b'href="menda-hello/"' in resp.body
    resp = request(url + "Menda_Hello/", headers=auth)  # non-normalized names resolve too
    assert resp.status == 200
    page = resp.body.decode()
    href = page.split('href="', 1)[1].split('"', 1)[0]
    rel, _, fragment = href.partition("#sha256=")
    assert rel == "0.1.0/menda_hello-0.1.0-py3-none-any.whl"
    resp = request(url + "menda-hello/" + rel, headers=auth)
    assert resp.status == 200 and hashlib.sha256(resp.body).hexdigest() == fragment
    assert request(url + "menda-hello", headers=auth).status == 301
    assert request(url + "nothing-here/", headers=auth).status == 404
    assert index.counts() == {"authorized": 5, "unauthorized": 5, "downloads": 1, "uploads": 0}

    cloud.revoke(token)
    assert request(url, headers=auth).status == 401


def multipart(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[str, bytes]:
    """(Content-Type, body) of a legacy upload, as twine builds one."""
    boundary = "menda-test-boundary"
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    if file is not None:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
            f'filename="{file[0]}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + file[1]
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(chunks)


def test_index_takes_legacy_uploads_and_serves_them(
    cloud: FakeMendaCloud, index: FakeCodeArtifactIndex, tmp_path: Path
) -> None:
    wheel = build_wheel(tmp_path, name="menda-uploaded", version="1.2.3")
    data = wheel.read_bytes()
    meta = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": "menda-uploaded",
        "version": "1.2.3",
        "sha256_digest": hashlib.sha256(data).hexdigest(),
    }
    content_type, body = multipart(meta, (wheel.name, data))
    repo_url = f"{index.url}/pypi/menda-plugins/"
    headers = {"Content-Type": content_type}
    assert request(repo_url, "POST", body, headers).status == 401
    token = exchange(cloud.url, machine_token(cloud.url)).json()["token"]
    assert request(repo_url, "POST", body, {**headers, **basic("someone", token)}).status == 401
    auth = {**headers, **basic("aws", token)}
    assert request(repo_url + "simple/", "POST", body, auth).status == 405
    stored = request(repo_url, "POST", body, auth)
    assert stored.status == 200, stored.body
    assert request(repo_url, "POST", body, auth).status == 409  # files are immutable
    assert index.counts()["uploads"] == 1

    page = request(repo_url + "simple/menda-uploaded/", headers=basic("aws", token))
    assert page.status == 200
    href = page.body.decode().split('href="', 1)[1].split('"', 1)[0]
    assert href == f"1.2.3/{wheel.name}#sha256={meta['sha256_digest']}"
    served = request(
        repo_url + "simple/menda-uploaded/" + href.split("#")[0], headers=basic("aws", token)
    )
    assert served.body == data

    for bad_meta, file in (
        ({**meta, "sha256_digest": "0" * 64}, (wheel.name, data)),
        ({**meta, "name": "someone-else"}, (wheel.name, data)),
        ({**meta, ":action": "submit"}, (wheel.name, data)),
        (meta, ("../escape-1.0-py3-none-any.whl", data)),
        (meta, None),
    ):
        content_type, bad = multipart(bad_meta, file)
        answer = request(repo_url, "POST", bad, {**auth, "Content-Type": content_type})
        assert answer.status == 400, (bad_meta, file and file[0], answer.body)
    assert sorted(p.name for p in index.dist_dir.iterdir() if "uploaded" in p.name) == [wheel.name]


def test_index_can_validate_through_the_control_api(cloud: FakeMendaCloud) -> None:
    ctl = FakeCloudControl(cloud.url)
    with FakeCodeArtifactIndex(ctl.is_valid_registry_token) as idx:
        token = exchange(cloud.url, machine_token(cloud.url)).json()["token"]
        assert request(idx.simple_url(), headers=basic("aws", token)).status == 200
        assert request(idx.simple_url(), headers=basic("aws", "caat_x")).status == 401


# -- the HTTPS proxy ---------------------------------------------------------------------


def test_proxy_tunnels_only_allowed_hosts(
    cloud: FakeMendaCloud, index: FakeCodeArtifactIndex
) -> None:
    token = exchange(cloud.url, machine_token(cloud.url)).json()["token"]
    with FakeHttpsProxy(index.handler_class) as proxy:
        ctx = ssl.create_default_context(cafile=str(proxy.ca_pem_path))
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=ctx, timeout=5)
        conn.set_tunnel(DEFAULT_HOST, 443)
        for _ in range(2):  # keep-alive: both requests share one tunnel
            conn.request("GET", "/pypi/menda-plugins/simple/", headers=basic("aws", token))
            resp = conn.getresponse()
            assert resp.status == 200 and b"menda-hello" in resp.read()
        conn.close()

        for target in ("evil.example.com:443", f"{DEFAULT_HOST}:8443"):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
                assert sock.recv(100).startswith(b"HTTP/1.1 403")
        resp = request(f"{proxy.url}/", headers={"Host": DEFAULT_HOST})
        assert resp.status == 403

        untrusting = ssl.create_default_context()
        conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=untrusting, timeout=5)
        conn.set_tunnel(DEFAULT_HOST, 443)
        with pytest.raises(ssl.SSLError):
            conn.request("GET", "/pypi/menda-plugins/simple/")
        conn.close()
        assert proxy.wait_for_count("tls_errors", 1)
        counts = proxy.counts()
    assert counts["connect"] == 4 and counts["connect_ok"] == 1
    assert counts["rejected"] == 3 and counts["tls_errors"] == 1


# -- the world, in process and as a CLI --------------------------------------------------


def read_line(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> bytes:
    """One stdout line from ``proc`` or fail after ``timeout`` (no blind sleeping)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            raise AssertionError(f"no line from the world process in {timeout}s: {buf!r}")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(f"world process exited early: {buf!r}")
        buf += chunk
    return buf


@pytest.mark.parametrize("how", ["sigterm", "stdin"])
def test_world_cli(tmp_path: Path, how: str) -> None:
    cmd = [sys.executable, "-m", "tests.fakes.world", "--state-dir", str(tmp_path)]
    if how == "stdin":
        cmd.append("--exit-on-stdin-close")
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        info = json.loads(read_line(proc))
        assert info["pid"] == proc.pid
        assert info["index_url"] == (
            "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
            "/pypi/menda-plugins/simple/"
        )
        assert Path(info["ca_pem"]) == tmp_path / "ca.pem"
        assert "BEGIN CERTIFICATE" in Path(info["ca_pem"]).read_text()
        assert json.loads((tmp_path / "world.json").read_text()) == info
        resp = oauth(info["cloud_url"], client_id=info["client_id"])
        assert resp.status == 401  # the sample client has its own secret
        resp = oauth(
            info["cloud_url"], client_id=info["client_id"], client_secret=info["client_secret"]
        )
        assert resp.status == 200
        assert FakeCloudControl(info["cloud_url"]).counts()["oauth_ok"] == 1
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            assert proc.stdin is not None
            proc.stdin.close()
        assert proc.wait(timeout=15) == 0
        assert proc.stderr is not None
        assert proc.stderr.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def world() -> Iterator[FakeWorld]:
    with FakeWorld() as fake:
        yield fake


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """An ``env -i`` style environment: nothing from the caller leaks in."""
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **extra}


def assert_imports(venv: Path) -> None:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import menda_hello; print(menda_hello.GREETING)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == GREETING


def test_uv_pip_install_through_the_proxy(world: FakeWorld, tmp_path: Path) -> None:
    uv = Path(sys.executable).parent / "uv"
    assert uv.exists(), f"uv not found at {uv}"
    home, venv = tmp_path / "home", tmp_path / "venv"
    home.mkdir()
    env = clean_env(
        home,
        HTTPS_PROXY=world.proxy_url,
        SSL_CERT_FILE=str(world.ca_pem),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_CACHE="1",
        UV_NO_CONFIG="1",
    )
    made = run([str(uv), "venv", "--python", sys.executable, str(venv)], env, timeout=120)
    assert made.returncode == 0, made.stderr
    install = [str(uv), "pip", "install", "--python", str(venv / "bin" / "python")]

    world.index.reset_counts()
    denied = run([*install, "--index-url", world.index_url(), "menda-hello"], env, timeout=120)
    assert denied.returncode != 0
    assert world.index.counts()["unauthorized"] >= 1

    connects = world.proxy.counts()["connect_ok"]
    token = world.registry_token()
    done = run(
        [*install, "--index-url", world.index_url(token=token), "menda-hello"], env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert world.proxy.counts()["connect_ok"] > connects
    assert world.index.counts()["downloads"] >= 1
    assert_imports(venv)


def _bundled_pip_wheel() -> Path | None:
    import ensurepip

    found = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    return found[-1] if found else None


@pytest.mark.parametrize("which", ["venv-pip", "current-pip"])
def test_pip_install_through_the_proxy(world: FakeWorld, tmp_path: Path, which: str) -> None:
    """``venv-pip``: the pip that ships with this Python, as ``<venv>/bin/pip``.
    ``current-pip``: the project venv's (newer, truststore-era) pip via ``--python``."""
    uv = Path(sys.executable).parent / "uv"
    home, venv = tmp_path / "home", tmp_path / "venv"
    home.mkdir()
    base_env = clean_env(home, UV_PYTHON_DOWNLOADS="never", UV_NO_CACHE="1", UV_NO_CONFIG="1")
    made = run([str(uv), "venv", "--python", sys.executable, str(venv)], base_env, timeout=120)
    assert made.returncode == 0, made.stderr
    if which == "venv-pip":
        wheel = _bundled_pip_wheel()
        if wheel is None:
            pytest.skip("this Python has no bundled pip wheel")
        seeded = run(
            [str(uv), "pip", "install", "--python", str(venv / "bin" / "python"), str(wheel)],
            base_env,
            timeout=120,
        )
        assert seeded.returncode == 0, seeded.stderr
        pip = [str(venv / "bin" / "pip")]
    else:
        pip = [str(Path(sys.executable).parent / "pip"), "--python", str(venv / "bin" / "python")]

    world.index.reset_counts()
    token = world.registry_token()
    env = clean_env(home, PIP_CONFIG_FILE=os.devnull)
    cmd = [
        *pip,
        "install",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "--no-input",
        "--cert",
        str(world.ca_pem),
        "--proxy",
        world.proxy_url,
        "--index-url",
        world.index_url(token=token),
        "menda-hello",
    ]
    done = run(cmd, env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert world.index.counts()["downloads"] >= 1
    assert_imports(venv)
