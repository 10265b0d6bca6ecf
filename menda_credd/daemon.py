"""One daemon's life: claim the socket, serve until SIGTERM/SIGINT, clean up, exit 0."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.abc import SocketListener

from menda_keyring.paths import prewarm_state_path
from menda_keyring.paths import socket_path as default_socket_path

from . import __version__, runtime, socket_upkeep
from .broker import DEFAULT_IDLE_TIMEOUT, Broker
from .connections import MAX_CONNECTIONS
from .http_async import AsyncSender
from .prewarmer import Prewarmer
from .server import CredServer

log = logging.getLogger("menda_credd")

#: Worker threads for file work; the token cache lock waits in one per cache at most.
WORKER_THREADS = 8
#: In-flight requests get this long to finish after SIGTERM.
SHUTDOWN_GRACE = 5.0


@dataclass
class Options:
    socket: str | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    #: Remember what is asked for and exchange it before it is asked (``--no-prewarm``).
    prewarm: bool = True


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
            print(_already_running(path, patience=5.0), flush=True)
            return 0
        if os.path.lexists(path):
            try:
                runtime.check_listener(path)
            except runtime.DaemonUntrusted as exc:
                print(f"menda-credd: {exc.reason}; refusing to start", file=sys.stderr)
                os.close(lock_fd)
                return 1
            if runtime.somebody_listens(path):
                print(_already_running(path, patience=0.0), flush=True)
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
        status = anyio.run(_serve, sock, path, options, ident, backend="asyncio")
    finally:
        if ident is not None:
            runtime.remove_socket_if_ours(path, ident)
        if lock_fd is not None:
            os.close(lock_fd)
    log.info("menda-credd stopped")
    return status


def _already_running(path: str, patience: float) -> str:
    """The "already running" line; the live daemon may still be starting: wait a moment."""
    import time

    end = time.monotonic() + patience
    while True:
        try:
            probe = runtime.probe_daemon(path, timeout=1.0)
        except runtime.DaemonUntrusted:
            probe = None
        if probe is not None and (
            probe.reported_pid is not None or probe.other_release(__version__) is not None
        ):
            return runtime.running_message(probe, __version__)
        if time.monotonic() >= end:
            return "menda-credd already running (pid unknown)"
        time.sleep(0.05)


async def _serve(
    sock: socket.socket, path: str, options: Options, ident: tuple[int, int] | None
) -> int:
    """Serve on ``sock`` until SIGTERM/SIGINT, then drain within SHUTDOWN_GRACE and close.

    ``ident`` is the socket file we bound (None: a service manager's, which it keeps).
    Returns the exit status: 0, or 1 when our socket file was taken away (socket_upkeep).
    """
    # Few worker threads (token cache and mendacfg reads, the cache lock): each thread that
    # parses a file grows its own malloc arena, and anyio's default of 40 cost ~40 MB RSS.
    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    sender = AsyncSender()
    try:
        async with contextlib.AsyncExitStack() as stack:
            broker = await stack.enter_async_context(
                Broker(sender.send, idle_timeout=options.idle_timeout)
            )
            prewarmer = None
            if options.prewarm:
                state = prewarm_state_path(os.environ)
                prewarmer = await stack.enter_async_context(Prewarmer(broker, state).running())
            return await _serve_with(broker, sock, path, options, ident, prewarmer)
    finally:
        await sender.close()


async def _serve_with(
    broker: Broker,
    sock: socket.socket,
    path: str,
    options: Options,
    ident: tuple[int, int] | None,
    prewarmer: Prewarmer | None,
) -> int:
    server = CredServer(
        broker,
        path,
        max_connections=options.max_connections,
        activated=ident is None,
        prewarmer=prewarmer,
    )
    # The listener never unlinks the socket file: we remove it ourselves, only when we
    # bound it, so a service manager's socket stays, and so does a newer daemon's.
    sock.setblocking(False)  # anyio's listener accepts without blocking the loop
    listener = await SocketListener.from_socket(sock)
    async with anyio.create_task_group() as group:
        # Signals are received from before READY until the drain is over: a second
        # SIGTERM while draining changes nothing instead of killing us mid-answer.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await group.start(server.serve, listener)
            log.info("menda-credd %s serving on %s (pid %d)", __version__, path, os.getpid())
            runtime.sd_notify(f"READY=1\nSTATUS=serving on {path}\nMAINPID={os.getpid()}")
            lost = await until_stopped(signals, path, ident)
            runtime.sd_notify("STOPPING=1")
            await server.shutdown(SHUTDOWN_GRACE)
    return 1 if lost else 0


async def until_stopped(
    signals: AsyncIterator[signal.Signals],
    path: str,
    ident: tuple[int, int] | None,
    interval: float = socket_upkeep.TOUCH_INTERVAL,
) -> bool:
    """Wait for SIGTERM/SIGINT (False), or for our socket file to be lost (True)."""
    lost = False
    async with anyio.create_task_group() as waits:

        async def signalled() -> None:
            async for signum in signals:
                log.info("%s: no new connections, finishing requests in flight", signum.name)
                break
            waits.cancel_scope.cancel()

        async def socket_lost(ident: tuple[int, int]) -> None:
            nonlocal lost
            await socket_upkeep.keep(path, ident, interval)
            log.warning(
                "the socket %s was removed or replaced by another file (a temporary-file "
                "cleaner?); no client can reach this daemon: stopping",
                path,
            )
            lost = True
            waits.cancel_scope.cancel()

        waits.start_soon(signalled)
        if ident is not None:
            waits.start_soon(socket_lost, ident)
    return lost
