"""One daemon's life: claim the socket, serve until SIGTERM/SIGINT, clean up, exit 0."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

from menda_keyring.daemon_protocol import MAX_LINE
from menda_keyring.paths import socket_path as default_socket_path

from . import __version__, runtime
from .broker import DEFAULT_IDLE_TIMEOUT, Broker
from .http_async import AsyncSender
from .server import CredServer

log = logging.getLogger("menda_credd")

#: In-flight requests get this long to finish after SIGTERM.
SHUTDOWN_GRACE = 5.0


@dataclass
class Options:
    socket: str | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = 256


def setup_logging(level: str) -> None:
    under_journal = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not under_journal:
        fmt = "%(asctime)s [%(process)d] " + fmt
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=fmt, force=True)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def run_foreground(options: Options) -> int:
    """``menda-credd start --foreground``: returns the exit status."""
    runtime.disable_core_dumps()
    runtime.scrub_menda_env()
    inherited = runtime.inherited_socket()
    lock_fd = None
    ident = None
    if inherited is not None:
        sock = inherited
        path = sock.getsockname() or options.socket or default_socket_path(os.environ)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        log.info("using the listening socket passed by the service manager (%s)", path)
    else:
        path = options.socket or default_socket_path(os.environ)
        try:
            runtime.prepare_socket_dir(path)
        except (runtime.SocketDirError, OSError) as exc:
            log.error("%s; not starting", exc)
            print(f"menda-credd: {exc}; not starting", file=sys.stderr)
            return 1
        lock_fd = runtime.acquire_daemon_lock(path)
        if lock_fd is None:
            pid = _wait_for_pid(path)
            print(
                f"menda-credd already running (pid {pid if pid is not None else 'unknown'})",
                flush=True,
            )
            return 0
        if os.path.lexists(path):
            try:
                runtime.check_listener(path)
            except runtime.DaemonUntrusted as exc:
                print(f"menda-credd: {exc.reason}; refusing to start", file=sys.stderr)
                os.close(lock_fd)
                return 1
            if runtime.somebody_listens(path):
                pid = runtime.ping_pid(path)
                print(f"menda-credd already running (pid {pid or 'unknown'})", flush=True)
                os.close(lock_fd)
                return 0
            log.info("removing stale socket %s (nobody listens)", path)
            os.unlink(path)
        try:
            sock = runtime.bind_private_socket(path)
        except (runtime.SocketDirError, OSError) as exc:
            log.error("cannot listen on %s: %s", path, exc)
            os.close(lock_fd)
            return 1
        ident = runtime.socket_identity(path)
    try:
        asyncio.run(_serve(sock, path, options, activated=inherited is not None))
    finally:
        if ident is not None:
            runtime.remove_socket_if_ours(path, ident)
        if lock_fd is not None:
            os.close(lock_fd)
    log.info("menda-credd stopped")
    return 0


def _wait_for_pid(path: str) -> int | None:
    """The live daemon may still be starting: give it a moment to answer a ping."""
    import time

    end = time.monotonic() + 5.0
    while True:
        pid = runtime.ping_pid(path, timeout=1.0)
        if pid is not None or time.monotonic() >= end:
            return pid
        time.sleep(0.05)


async def _serve(sock: socket.socket, path: str, options: Options, activated: bool) -> None:
    sender = AsyncSender()
    async with Broker(sender.send, idle_timeout=options.idle_timeout) as broker:
        await _serve_with(broker, sender, sock, path, options, activated)


async def _serve_with(
    broker: Broker,
    sender: AsyncSender,
    sock: socket.socket,
    path: str,
    options: Options,
    activated: bool,
) -> None:
    loop = asyncio.get_running_loop()
    server = CredServer(broker, path, max_connections=options.max_connections, activated=activated)
    # We remove the socket file ourselves, only when we bound it: a service manager's
    # socket stays, and so does a newer daemon's. Python 3.13 would unlink it on close.
    keep_file: dict[str, bool] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}
    listener = await asyncio.start_unix_server(
        server.handle, sock=sock, limit=MAX_LINE, **keep_file
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("menda-credd %s serving on %s (pid %d)", __version__, path, os.getpid())
    runtime.sd_notify(f"READY=1\nSTATUS=serving on {path}\nMAINPID={os.getpid()}")
    try:
        await stop.wait()
    finally:
        log.info("stopping: no new connections, finishing requests in flight")
        runtime.sd_notify("STOPPING=1")
        listener.close()
        await server.drain(SHUTDOWN_GRACE)
        broker.close()
        await sender.close()
