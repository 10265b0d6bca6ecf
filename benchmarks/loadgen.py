"""Figure 6 load generator: C concurrent connections to menda-credd, each sending ``get``
requests back to back (one JSON line each way, several requests per connection as the
daemon allows), for a duration or for a number of requests.

``python -m benchmarks.loadgen --socket PATH --spec FILE --connections 64 --seconds 10``
or ``--requests 100000``. FILE holds JSON ``[[service, env], ...]``: request ``i`` uses
entry ``i % len``. Prints one JSON line: answers, errors, seconds, answers_per_s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


async def worker(
    path: str, lines: list[bytes], start: int, stride: int, state: dict, stop_at: float | None
) -> None:
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
    i = start
    n = len(lines)
    try:
        while True:
            if stop_at is not None and time.monotonic() >= stop_at:
                return
            if stop_at is None:
                if state["issued"] >= state["target"]:
                    return
                state["issued"] += 1
            writer.write(lines[i % n])
            i += stride
            while True:
                reply = await reader.readline()
                if not reply:
                    state["errors"] += 1
                    return
                if b'"wait"' not in reply:
                    break
            if b'"ok":true' in reply and b'"password":"' in reply:
                state["answers"] += 1
            else:
                state["errors"] += 1
                if state["first_error"] is None:
                    state["first_error"] = reply[:300].decode("utf-8", "replace")
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict:
    with open(args.spec) as fh:
        spec = json.load(fh)
    lines = [
        json.dumps(
            {"v": 1, "op": "get", "service": svc, "username": "aws", "env": env},
            separators=(",", ":"),
        ).encode()
        + b"\n"
        for svc, env in spec
    ]
    state = {"answers": 0, "errors": 0, "issued": 0, "target": args.requests, "first_error": None}
    stop_at = time.monotonic() + args.seconds if args.requests is None else None
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(
            worker(args.socket, lines, k, args.connections, state, stop_at)
            for k in range(args.connections)
        ),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - t0
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    return {
        "connections": args.connections,
        "answers": state["answers"],
        "errors": state["errors"],
        "first_error": state["first_error"],
        "worker_failures": failures[:3],
        "seconds": elapsed,
        "answers_per_s": state["answers"] / elapsed if elapsed > 0 else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
