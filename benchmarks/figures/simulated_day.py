"""Figure 9: a simulated day of the daemon's token engine on a virtual clock."""

from __future__ import annotations

import importlib.util
import json
import subprocess

from benchmarks.harness import PY, ROOT, SKIP_DAEMON, Bench, log


def measure(bench: Bench) -> None:
    if importlib.util.find_spec("menda_credd") is None:
        bench.figures["9_simulated_day"] = SKIP_DAEMON
        return
    log("figure 9: a simulated day on a virtual clock")
    pairs = 4 if bench.quick else 8
    out = subprocess.run(
        [str(PY), "-m", "benchmarks.simday", "--pairs", str(pairs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"simday.py failed: {out.stderr[-2000:]}")
    bench.figures["9_simulated_day"] = json.loads(out.stdout)
