"""menda-keyring benchmark: every figure side by side in one run, on loopback.

    .venv/bin/python -m benchmarks.run [--quick] [--rounds N] [--json PATH]

Run from the repository root. Prints the machine, a table (medians with min and max,
ratios, targets) and writes ``benchmarks/results/latest.json``. See benchmarks/README.md
for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.figures import (
    exec_overhead,
    fleet,
    herd,
    latency,
    simulated_day,
    startup,
    throughput,
    uv_installs,
    working_week,
)
from benchmarks.harness import RESULTS, Bench, loadavg, log, machine
from benchmarks.report import table, targets

STEPS: list[tuple[str, Callable[[Bench], None]]] = [
    ("startup", startup.measure),
    ("latency", latency.measure),
    ("throughput", throughput.measure),
    ("herd", herd.measure),
    ("uv", uv_installs.measure),
    ("simday", simulated_day.measure),
    ("exec", exec_overhead.measure),
    ("workweek", working_week.measure),
    ("fleet", fleet.measure),
]


def run(quick: bool, rounds: int | None) -> dict[str, Any]:
    """Every step in turn; a failing step is reported and the others still run."""
    started = time.perf_counter()
    bench = Bench(quick, rounds)
    result: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "rounds": bench.rounds,
        "machine": machine(),
        "daemon": "available" if bench.daemon_reason is None else bench.daemon_reason,
        "loadavg_start": loadavg(),
    }
    busy = result["loadavg_start"][:1]
    if busy and busy[0] > 0.5 * (os.cpu_count() or 1):
        log(f"WARNING: the machine is busy (load {busy[0]}): wall times will be noisy")
    with bench:
        if bench.daemon_reason is not None:
            result["daemon"] = bench.daemon_reason
        for name, step in STEPS:
            t0 = time.perf_counter()
            try:
                step(bench)
            except Exception as exc:  # report, and go on with the rest
                log(f"{name} failed: {exc!r}")
                result.setdefault("errors", {})[name] = repr(exc)[:2000]
            result.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 1)
    result["figures"] = bench.figures
    result["targets"] = targets(bench.figures)
    result["loadavg_end"] = loadavg()
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    return result


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI mode: few rounds, short runs")
    parser.add_argument("--rounds", type=int, default=None, help="rounds for figures 1-4, 10")
    parser.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write")
    args = parser.parse_args(argv)
    with sigterm_as_exit():
        result = run(args.quick, args.rounds)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(table(result))
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
