"""Figure 13: ten thousand hosts against one rate-limited menda-cloud, simulated."""

from __future__ import annotations

from benchmarks.fleet import scenarios
from benchmarks.harness import Bench, log


def measure(bench: Bench) -> None:
    size = scenarios.size(bench.quick)
    log(f"figure 13: a fleet of {size['hosts']} hosts on a virtual clock")
    bench.figures["13_fleet"] = scenarios.run_all(**size)
