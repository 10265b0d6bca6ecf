"""Figure 9: a simulated day of the daemon's token engine on a virtual clock."""

from __future__ import annotations

import importlib.util

from benchmarks.harness import SKIP_DAEMON, Bench, json_of, log


def measure(bench: Bench) -> None:
    if importlib.util.find_spec("menda_credd") is None:
        bench.figures["9_simulated_day"] = SKIP_DAEMON
        return
    log("figure 9: a simulated day on a virtual clock")
    pairs = 4 if bench.quick else 8
    bench.figures["9_simulated_day"] = json_of("benchmarks.simday", "--pairs", str(pairs))
