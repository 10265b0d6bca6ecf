"""Shared plumbing for the loopback servers: threaded, connection-tracking, quiet."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypeVar


class TrackingMixin:
    """Remembers live client sockets so ``stop()`` can cut idle keep-alive connections."""

    def init_tracking(self) -> None:
        """Create the connection set (call from ``__init__``)."""
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, sock: socket.socket) -> None:
        """Register a socket that must be shut down on stop."""
        with self._conns_lock:
            self._conns.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        """Forget a socket that is done."""
        with self._conns_lock:
            self._conns.discard(sock)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track, then hand off to a thread."""
        self.track(request)
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        """Untrack, then close."""
        self.untrack(request)
        super().shutdown_request(request)  # type: ignore[misc]

    def close_all_connections(self) -> None:
        """Shut down every tracked socket so blocked handler threads return."""
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class QuietHTTPServer(TrackingMixin, socketserver.ThreadingMixIn, HTTPServer):
    """Threaded HTTP/1.1 server for loopback tests: daemon threads, large backlog, no DNS."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.init_tracking()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without ``getfqdn`` (a reverse DNS lookup that can stall in sandboxes)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class QuietTCPServer(TrackingMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded raw TCP server with the same properties as :class:`QuietHTTPServer`."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler]
    ) -> None:
        self.init_tracking()
        super().__init__(address, handler)


R = TypeVar("R", bound="ServerRunner")


class ServerRunner:
    """Runs a socketserver in a background thread; context manager.

    Also what every fake counts: ``COUNTERS`` names them, :meth:`counts` reports them,
    :meth:`reset_counts` zeroes them; and a temporary folder (``_tmp``) removed on exit.
    """

    poll_interval = 0.05
    #: The counters :meth:`counts` reports, all zero after :meth:`reset_counts`.
    COUNTERS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._server: QuietHTTPServer | QuietTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self._tmp: str | None = None
        self._counts_changed = threading.Condition()
        self._counts = dict.fromkeys(self.COUNTERS, 0)

    def _make_server(self) -> QuietHTTPServer | QuietTCPServer:
        raise NotImplementedError

    # -- counters ------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._counts_changed:
            return dict(self._counts)

    def reset_counts(self) -> None:
        """Zero the counters."""
        with self._counts_changed:
            self._counts = dict.fromkeys(self.COUNTERS, 0)
            self._counts_changed.notify_all()

    def _count(self, key: str) -> None:
        with self._counts_changed:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._counts_changed.notify_all()

    def wait_for_count(self, key: str, at_least: int, timeout: float = 10.0) -> bool:
        """Block until counter ``key`` reaches ``at_least`` (True) or ``timeout`` (False)."""
        with self._counts_changed:
            return self._counts_changed.wait_for(
                lambda: self._counts.get(key, 0) >= at_least, timeout
            )

    # -- life ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start()``)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._server is not None

    def start(self: R) -> R:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listener and cut open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        """Stop, and remove the temporary folder if one was made."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self: R) -> R:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler base with small response helpers and no logging."""

    protocol_version = "HTTP/1.1"
    server_version = "menda-fake/1.0"
    sys_version = ""
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def read_body(self, limit: int = 1 << 20) -> bytes:
        """Read the request body (Content-Length or chunked); always drains it."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)[:limit]
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
        head_only: bool = False,
    ) -> None:
        """Send a complete response with Content-Length (keep-alive safe)."""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head_only and body:
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """Send ``obj`` as a JSON response."""
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)
