"""Figure 12: a signed-in developer's working week on a virtual clock (``workweek.py``)."""

from __future__ import annotations

import importlib.util

from benchmarks.harness import SKIP_DAEMON, Bench, json_of, log


def measure(bench: Bench) -> None:
    if importlib.util.find_spec("menda_credd") is None:
        bench.figures["12_working_week"] = SKIP_DAEMON
        return
    # Virtual time: the two weeks take seconds, so quick mode runs the same figure.
    log("figure 12: a working week of a signed-in developer on a virtual clock")
    bench.figures["12_working_week"] = json_of("benchmarks.workweek")
