"""A tiny loopback fake of the AWS CodeArtifact ``GetAuthorizationToken`` API.

``POST /v1/authorization-token?domain=D&domain-owner=O[&duration=S]`` answers
``{"authorizationToken": "...", "expiration": <epoch seconds>}`` (what botocore
parses for ``codeartifact.get_authorization_token``). Anything else is 404.

As a process: ``python -m benchmarks.fake_codeartifact`` prints one JSON line
``{"url": ..., "pid": ...}`` and serves until stdin closes or SIGTERM.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeCodeArtifactServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        if parsed.path.rstrip("/") != "/v1/authorization-token" or "domain" not in query:
            self._send(404, {"message": f"no route {parsed.path}"})
            return
        duration = int((query.get("duration") or ["3600"])[0]) or 3600
        with self.server.lock:
            self.server.calls += 1
        self._send(
            200,
            {
                "authorizationToken": "fakecaat_" + secrets.token_urlsafe(48),
                "expiration": int(time.time()) + min(duration, 43200),
            },
        )

    def do_GET(self) -> None:
        if self.path == "/_calls":
            self._send(200, {"calls": self.server.calls})
        else:
            self._send(404, {"message": "not found"})

    def _send(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeCodeArtifactServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.calls = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def main() -> int:
    server = FakeCodeArtifactServer()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())

    def watch_stdin() -> None:
        with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
            while stdin.read(4096):
                pass
        server.shutdown()

    threading.Thread(target=watch_stdin, daemon=True).start()
    sys.stdout.write(json.dumps({"url": server.url, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
