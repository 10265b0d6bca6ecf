"""Measures the patches proposed for figures 5 and 6 before anyone applies them.

    .venv/bin/python benchmarks/proposals.py

Starts two daemons against the fake menda-cloud: the stock ``menda-credd`` and the same
code with the proposed server patches applied by monkeypatching (``daemon`` below); and
runs ``keyring.get_password`` with the stock shim and with the proposed shim (one daemon
connection per process, reused). Prints p50/p90/p99 for every pairing, interleaved, beside
the bare echo, then 64-connection throughput of both daemons. Delete this file once the
patches are in (or they are rejected): it copies code that will move on.

Proposed, server (``menda_credd/server.py``):
  1. a fast path for repeated request lines: raw line -> (Identity, RegistryTarget) for
     env-trio identities (bounded), reply bytes cached per token;
  2. ``Identity.fingerprint`` computed once (``functools.cached_property``);
  3. ``async with asyncio.timeout()`` instead of ``asyncio.wait_for`` around each readline
     (3.11 wraps every ``wait_for`` in a new Task and timer); drain only when buffered.
Proposed, shim (``menda_keyring/client.py``): keep the connection open per process (pid
checked, so forks reconnect) and reconnect once when the daemon closed an idle one.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
URL = (
    "https://aws@menda-private-058264169513.d.codeartifact.eu-west-1.amazonaws.com"
    "/pypi/menda-plugins/simple/"
)
FAST_MAX = 4096


# -- the proposed daemon (run as `proposals.py daemon start --foreground ...`) -------------


def patched_daemon(argv: list[str]) -> int:
    from menda_credd.cli import main
    from menda_credd.server import CredServer, encode
    from menda_keyring.daemon_protocol import VERSION, identity_env
    from menda_keyring.identity import (
        ENV_CLIENT_ID,
        ENV_CLIENT_SECRET,
        ENV_HOST,
        Identity,
        home_from_env,
        resolve_identity,
    )
    from menda_keyring.urls import parse_codeartifact_service

    fingerprint = functools.cached_property(Identity.fingerprint.fget)  # type: ignore[attr-defined]
    fingerprint.__set_name__(Identity, "fingerprint")
    Identity.fingerprint = fingerprint  # type: ignore[assignment,method-assign]

    def fast_reply(self: Any, line: bytes) -> bytes | None:
        hit = self.__dict__.setdefault("_fast", {}).get(line)
        if hit is None:
            return None
        token = self.broker.peek(*hit)
        if token is None:
            return None
        self.broker.count("requests")
        replies = self.__dict__.setdefault("_replies", {})
        data = replies.get(token.token)
        if data is None:
            if len(replies) >= FAST_MAX:
                replies.clear()
            reply = {
                "v": VERSION,
                "ok": True,
                "username": token.username,
                "password": token.token,
                "expires_at": token.expires_at,
            }
            data = replies[token.token] = encode(reply)
        return data

    def remember(self: Any, line: bytes) -> None:
        message = json.loads(line)
        env = identity_env(message.get("env", {}))
        if not (env.get(ENV_CLIENT_ID) and env.get(ENV_CLIENT_SECRET) and env.get(ENV_HOST)):
            return  # profile identities keep IdentityCache's mendacfg version check
        if message.get("op") != "get" or message.get("username") not in (None, "aws"):
            return
        target = parse_codeartifact_service(message.get("service"))
        if target is None:
            return
        fast = self.__dict__.setdefault("_fast", {})
        if len(fast) >= FAST_MAX:
            fast.clear()
        fast[line] = (resolve_identity(env, home_from_env(env)), target)

    async def _serve(self: Any, reader: Any, writer: Any, task: Any) -> None:
        while not self.stopping:
            try:
                async with asyncio.timeout(self.read_timeout):
                    line = await reader.readline()
            except (TimeoutError, ValueError, asyncio.LimitOverrunError):
                return
            if not line.strip():
                if not line:
                    return
                continue
            data = fast_reply(self, line)
            if data is None:
                self.busy.add(task)
                try:
                    reply = await self.dispatch(line, writer)
                    data = encode(reply)
                    if reply.get("ok") and reply.get("password"):
                        remember(self, line)
                finally:
                    self.busy.discard(task)
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                await writer.drain()

    CredServer._serve = _serve  # type: ignore[method-assign]
    return main(argv)


# -- the proposed shim ----------------------------------------------------------------------

_CONN: tuple[int, str, socket.socket] | None = None


def persistent_exchange(path: str, line: bytes, total_timeout: float) -> dict:
    from menda_keyring import client

    global _CONN
    for _ in range(2):
        fresh = _CONN is None or _CONN[0] != os.getpid() or _CONN[1] != path
        if fresh:
            if _CONN is not None:
                _CONN[2].close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(client.CONNECT_TIMEOUT)
            try:
                sock.connect(path)
            except OSError as exc:
                sock.close()
                _CONN = None
                raise client.DaemonUnavailable(f"cannot reach the daemon: {exc}") from None
            sock.settimeout(client.IDLE_TIMEOUT)
            _CONN = (os.getpid(), path, sock)
        assert _CONN is not None
        sock = _CONN[2]
        try:
            sock.sendall(line)
            buffer = b""
            while True:
                newline = buffer.find(b"\n")
                while newline >= 0:
                    reply = client._parse(buffer[:newline])
                    buffer = buffer[newline + 1 :]
                    if not reply.get("wait"):
                        return reply
                    newline = buffer.find(b"\n")
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buffer += chunk
        except OSError:
            sock.close()
            _CONN = None
            if fresh:
                raise client.DaemonUnavailable("lost the daemon") from None
            # the daemon closed an idle kept-open connection: reconnect once
    raise client.DaemonUnavailable("lost the daemon")


# -- the measurement ------------------------------------------------------------------------


def measure() -> int:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from latency import Persistent, echo_once, percentiles

    from tests.fakes.menda_cloud import FakeMendaCloud

    tmp = Path(tempfile.mkdtemp(prefix="mprop-", dir="/tmp"))
    tmp.chmod(0o700)
    socks = {name: str(tmp / f"{name}.sock") for name in ("stock", "patched", "echo")}
    procs: list[subprocess.Popen] = []
    with FakeMendaCloud() as cloud:
        cloud.add_client("c", "s")
        env = {
            "HOME": str(tmp),
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "MENDA_CLIENT_ID": "c",
            "MENDA_CLIENT_SECRET": "s",
            "MENDA_HOST": cloud.url,
        }
        tail = ["start", "--foreground", "--log-level", "warning", "--socket"]
        try:
            for name, head in (
                ("stock", [sys.executable, "-m", "menda_credd"]),
                ("patched", [sys.executable, __file__, "daemon"]),
            ):
                procs.append(subprocess.Popen([*head, *tail, socks[name]], env=env))
            echo = subprocess.Popen(
                [sys.executable, str(HERE / "echo_server.py"), socks["echo"]],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            procs.append(echo)
            assert echo.stdout is not None
            echo.stdout.readline()
            end = time.monotonic() + 20
            while not all(os.path.exists(s) for s in socks.values()):
                if time.monotonic() > end:
                    raise RuntimeError("daemons did not start")
                time.sleep(0.05)
            time.sleep(0.5)
            os.environ.update(env)
            import keyring

            from menda_keyring import backend

            stock_exchange = backend.exchange

            def via(sock: str, exchange: Any) -> Any:
                def call() -> None:
                    os.environ["MENDA_CREDD_SOCKET"] = sock
                    backend.exchange = exchange
                    assert keyring.get_password(URL, "aws")

                return call

            loops = {
                "stock shim -> stock daemon": via(socks["stock"], stock_exchange),
                "stock shim -> patched daemon": via(socks["patched"], stock_exchange),
                "kept-open shim -> stock daemon": via(socks["stock"], persistent_exchange),
                "kept-open shim -> patched daemon": via(socks["patched"], persistent_exchange),
                "echo, one connection per call": lambda: echo_once(socks["echo"]),
                "echo, kept-open connection": Persistent(socks["echo"]),
            }
            for fn in loops.values():
                for _ in range(100):
                    fn()
            samples: dict[str, list[float]] = {name: [] for name in loops}
            for _ in range(20):
                for name, fn in loops.items():
                    for _ in range(100):
                        t0 = time.perf_counter()
                        fn()
                        samples[name].append(time.perf_counter() - t0)
            print(f"load average {os.getloadavg()}")
            for name, values in samples.items():
                p = percentiles(values)
                print(
                    f"{name:34} p50 {p['p50_us']:6.0f} us  p90 {p['p90_us']:6.0f} us  "
                    f"p99 {p['p99_us']:6.0f} us"
                )
            spec = tmp / "spec.json"
            spec.write_text(json.dumps([[URL, env]]))
            for name in ("stock", "patched"):
                out = subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "loadgen.py"),
                        "--socket",
                        socks[name],
                        "--spec",
                        str(spec),
                        "--connections",
                        "64",
                        "--seconds",
                        "3",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                run = json.loads(out.stdout)
                print(f"{name} daemon, 64 connections: {run['answers_per_s']:.0f} answers/s")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["daemon"]:
        sys.exit(patched_daemon(sys.argv[2:]))
    sys.exit(measure())
