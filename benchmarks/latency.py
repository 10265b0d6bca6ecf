"""Figure 5: in-process latency of ``keyring.get_password`` answered by menda-credd, and of a
bare echo over the same kind of Unix socket (the reference).

``python -m benchmarks.latency --url URL --echo-socket PATH --calls N`` (the daemon's socket
comes from ``MENDA_CREDD_SOCKET`` as for every caller) prints one JSON line with
percentiles in microseconds. Both loops interleave in blocks so noise hits them equally.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time

LINE = (
    json.dumps(
        {
            "v": 1,
            "op": "get",
            "service": "https://aws@x-111111111111.d.codeartifact.eu-west-1.amazonaws.com/pypi/r/simple/",
            "username": "aws",
            "env": {"MENDA_CLIENT_ID": "c", "MENDA_CLIENT_SECRET": "s", "HOME": "/h"},
        },
        separators=(",", ":"),
    ).encode()
    + b"\n"
)


def echo_once(path: str) -> dict:
    """One request the way the shim sends it: connect, one line out, one line back, close."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.5)
        sock.connect(path)
        sock.sendall(LINE)
        buffer = b""
        while b"\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("echo closed early")
            buffer += chunk
        return json.loads(buffer[: buffer.index(b"\n")])
    finally:
        sock.close()


class Persistent:
    """The same request over one connection kept open (the daemon allows several per
    connection): what a shim that reuses its connection would pay."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)

    def __call__(self) -> dict:
        self.sock.sendall(LINE)
        buffer = b""
        while b"\n" not in buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("echo closed early")
            buffer += chunk
        return json.loads(buffer[: buffer.index(b"\n")])


def percentiles(samples: list[float]) -> dict[str, float]:
    data = sorted(samples)
    n = len(data)

    def pct(p: float) -> float:
        return data[min(n - 1, max(0, round(p / 100 * (n - 1))))] * 1e6

    return {
        "n": n,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "min_us": data[0] * 1e6,
        "max_us": data[-1] * 1e6,
        "mean_us": sum(data) / n * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--echo-socket", required=True)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    import keyring

    get = keyring.get_password
    backend = type(keyring.get_keyring()).__name__
    daemon_socket = os.environ["MENDA_CREDD_SOCKET"]
    first = get(args.url, "aws")
    if not first:
        print(json.dumps({"error": "the daemon gave no token"}))
        return 1
    persistent = Persistent(args.echo_socket)

    def via_daemon() -> object:
        return get(args.url, "aws")

    def via_echo() -> object:
        # The whole client side (keyring, our backend, the shim) against a trivial server.
        os.environ["MENDA_CREDD_SOCKET"] = args.echo_socket
        try:
            return get(args.url, "aws")
        finally:
            os.environ["MENDA_CREDD_SOCKET"] = daemon_socket

    loops = {
        "keyring_get_password": via_daemon,
        "echo_reference": lambda: echo_once(args.echo_socket),
        "keyring_get_password_via_echo": via_echo,
        "echo_reference_persistent_connection": persistent,
    }
    for fn in loops.values():  # warm every path
        for _ in range(50):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in loops}
    clock = time.perf_counter
    block = 100
    done = 0
    while done < args.calls:
        n = min(block, args.calls - done)
        for name, fn in loops.items():
            out_list = samples[name]
            for _ in range(n):
                t0 = clock()
                fn()
                out_list.append(clock() - t0)
        done += n
    out: dict[str, object] = {"backend": backend, "pid": os.getpid()}
    out.update({name: percentiles(values) for name, values in samples.items()})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
