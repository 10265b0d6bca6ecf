"""Loopback HTTPS forward proxy that "is" CodeArtifact for allow-listed hosts.

``CONNECT host:443`` for an allowed host gets ``200 Connection established``; the proxy then
terminates TLS itself with a leaf certificate for that host (signed by a throwaway
``trustme`` CA written to :attr:`FakeHttpsProxy.ca_pem_path`) and serves the wrapped socket
with an HTTP handler class (the fake index), keep-alive included. Anything else: 403.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import tempfile
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import trustme

from tests.fakes._server import QuietTCPServer, ServerRunner

DEFAULT_HOST = "menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
_MAX_HEAD = 16384


class FakeHttpsProxy(ServerRunner):
    """HTTPS CONNECT proxy on ``127.0.0.1``; ``url`` is ``http://127.0.0.1:PORT``.

    ``handler_class`` is a ``BaseHTTPRequestHandler`` subclass run over each TLS tunnel.
    ``ca_dir`` is where ``ca.pem`` goes (default: a temp dir removed by ``close()``).
    """

    #: every CONNECT, those tunnelled, 403s, failed TLS handshakes
    COUNTERS = ("connect", "connect_ok", "rejected", "tls_errors")

    def __init__(
        self,
        handler_class: type[BaseHTTPRequestHandler],
        hosts: Iterable[str] = (DEFAULT_HOST,),
        *,
        ca_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__()
        self.handler_class = handler_class
        self.hosts = frozenset(h.lower().rstrip(".") for h in hosts)
        if not self.hosts:
            raise ValueError("at least one allowed host is needed")
        self.host = host
        self._bind_port = port
        if ca_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="menda-fake-proxy-")
            ca_dir = self._tmp
        Path(ca_dir).mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name="menda fake CodeArtifact CA")
        self.ca_pem_path = Path(ca_dir) / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem_path))
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert(*sorted(self.hosts)).configure_cert(self.ssl_context)
        self.ssl_context.set_alpn_protocols(["http/1.1"])

    def _make_server(self) -> QuietTCPServer:
        server = QuietTCPServer((self.host, self._bind_port), _ProxyHandler)
        server.proxy = self  # type: ignore[attr-defined]
        return server

    @property
    def url(self) -> str:
        """Proxy URL for ``HTTPS_PROXY`` / ``--proxy``."""
        return f"http://{self.host}:{self.port}"


class _ProxyHandler(socketserver.BaseRequestHandler):
    """One client connection: parse the CONNECT head, then tunnel into the fake index."""

    request: socket.socket

    def _read_head(self) -> bytes | None:
        # Byte-at-a-time so nothing after the head (a TLS ClientHello) is swallowed.
        buf = bytearray()
        while not buf.endswith(b"\r\n\r\n") and not buf.endswith(b"\n\n"):
            if len(buf) > _MAX_HEAD:
                return None
            chunk = self.request.recv(1)
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def _reject(self, why: str) -> None:
        body = f"403 Forbidden: {why}\n".encode()
        head = (
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            self.request.sendall(head + body)

    def handle(self) -> None:
        proxy: FakeHttpsProxy = self.server.proxy  # type: ignore[attr-defined]
        self.request.settimeout(30)
        try:
            head = self._read_head()
        except OSError:
            return
        if head is None:
            return
        request_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        if method.upper() != "CONNECT":
            proxy._count("rejected")
            self._reject(f"only CONNECT is supported, not {method}")
            return
        proxy._count("connect")
        hostname, _, port = target.rpartition(":")
        hostname = hostname.strip("[]").lower().rstrip(".")
        if port != "443" or hostname not in proxy.hosts:
            proxy._count("rejected")
            self._reject(f"{target} is not an allowed tunnel")
            return
        try:
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            tls = proxy.ssl_context.wrap_socket(self.request, server_side=True)
        except (OSError, ssl.SSLError):
            proxy._count("tls_errors")
            return
        proxy._count("connect_ok")
        server: QuietTCPServer = self.server  # type: ignore[assignment]
        server.track(tls)
        try:
            proxy.handler_class(tls, self.client_address, self.server)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass
        finally:
            server.untrack(tls)
            with contextlib.suppress(OSError):
                tls.close()
