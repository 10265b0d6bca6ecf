"""Figure 11: a signed-in developer's working week on a virtual clock (``workweek.py``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess

from benchmarks.harness import PY, ROOT, SKIP_DAEMON, Bench, log


def measure(bench: Bench) -> None:
    if importlib.util.find_spec("menda_credd") is None:
        bench.figures["11_working_week"] = SKIP_DAEMON
        return
    # Virtual time: the two weeks take seconds, so quick mode runs the same figure.
    log("figure 11: a working week of a signed-in developer on a virtual clock")
    out = subprocess.run(
        [str(PY), "-m", "benchmarks.workweek"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"workweek.py failed: {out.stderr[-2000:]}")
    bench.figures["11_working_week"] = json.loads(out.stdout)
