"""An HTTPS front for the fake menda-cloud: TLS on loopback, relaying each POST to it."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme

from tests.fakes.menda_cloud import FakeMendaCloud


def tls_front(cloud: FakeMendaCloud, ca: trustme.CA | None = None) -> ThreadingHTTPServer:
    """HTTPS for ``localhost`` with a certificate from ``ca`` (default: one nobody trusts).

    The caller runs ``serve_forever`` in a thread and ``shutdown`` afterwards.
    """

    class Relay(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            request = urllib.request.Request(cloud.url + self.path, body, headers, method="POST")
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                answer = opener.open(request, timeout=10)
            except urllib.error.HTTPError as error:
                answer = error
            payload = answer.read()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (ca or trustme.CA()).issue_cert("localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
