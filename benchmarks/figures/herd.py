"""Figure 7: a cold herd of ``keyring get`` processes, with and without the daemon."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from benchmarks.harness import BIN, CA_URL, SKIP_DAEMON, Bench, log


def measure(bench: Bench) -> None:
    n = 16 if bench.quick else 64
    fig: dict[str, Any] = {"processes": n}
    modes = ["without_daemon"] + (["with_daemon"] if bench.daemon is not None else [])
    for mode in modes:
        client = f"herd-{mode}"
        secret = f"herd-secret-{mode}"
        bench.cloud.add_client(client, secret)
        env = bench.env(bench.mkhome(f"herd-{mode}"), client=client, secret=secret)
        if mode == "without_daemon":
            env["MENDA_CREDD"] = "off"
        bench.cloud.reset_counts()
        log(f"figure 7: {n} cold keyring get processes, {mode}")
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [str(BIN / "keyring"), "get", CA_URL, "aws"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(n)
        ]
        codes = [p.wait(120) for p in procs]
        for p in procs:
            assert p.stderr is not None
            p.stderr.close()
        wall = time.perf_counter() - t0
        counts = bench.cloud.counts()
        fig[mode] = {
            "wall_s": round(wall, 3),
            "failed": sum(1 for c in codes if c != 0),
            "oauth": counts["oauth"],
            "registry": counts["registry"],
        }
    if bench.daemon is None:
        fig["with_daemon"] = SKIP_DAEMON
    bench.figures["7_cold_herd"] = fig
