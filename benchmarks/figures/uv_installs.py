"""Figure 8: parallel ``uv pip install`` through the fake index and proxy."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from typing import Any

from benchmarks.harness import BIN, PY, SKIP_DAEMON, Bench, log


def measure(bench: Bench) -> None:
    n = 4 if bench.quick else 16
    trials = 1 if bench.quick else 3
    uv = str(BIN / "uv")
    keyring_bin = bench.tmp / "keyring-only-bin"
    keyring_bin.mkdir(exist_ok=True)
    if not (keyring_bin / "keyring").exists():
        (keyring_bin / "keyring").symlink_to(BIN / "keyring")
    fig: dict[str, Any] = {"installs": n, "package": "menda-hello", "trials": trials}
    modes = ["without_daemon"] + (["with_daemon"] if bench.daemon is not None else [])
    for mode in modes:
        runs = []
        for trial in range(trials):
            client = f"uv-{mode}-{trial}"
            secret = f"uv-secret-{mode}-{trial}"
            bench.cloud.add_client(client, secret)
            box = bench.tmp / f"uv-{mode}-{trial}"
            home = bench.mkhome(f"uv-{mode}-{trial}/home")
            env = bench.env(home, keyring_bin, client=client, secret=secret)
            env.update(bench.uv_env(), TMPDIR=str(box))
            if mode == "without_daemon":
                env["MENDA_CREDD"] = "off"
            venvs = [box / f"venv{i}" for i in range(n)]
            for venv in venvs:
                subprocess.run(
                    [uv, "venv", "-q", "--python", str(PY), str(venv)],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            bench.cloud.reset_counts()
            log(f"figure 8: {n} parallel uv pip install, {mode}, trial {trial + 1}")
            t0 = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [
                        uv,
                        "pip",
                        "install",
                        "-q",
                        "--python",
                        str(venv / "bin" / "python"),
                        "--keyring-provider",
                        "subprocess",
                        "--index-url",
                        bench.info["index_url"],
                        "menda-hello",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for venv in venvs
            ]
            errors = []
            for p in procs:
                _, err = p.communicate(timeout=300)
                if p.returncode != 0:
                    errors.append(err[-300:])
            wall = time.perf_counter() - t0
            counts = bench.cloud.counts()
            runs.append(
                {
                    "wall_s": round(wall, 3),
                    "failed": len(errors),
                    "first_error": errors[0] if errors else None,
                    "oauth": counts["oauth"],
                    "registry": counts["registry"],
                }
            )
            shutil.rmtree(box, ignore_errors=True)
        walls = [r["wall_s"] for r in runs]
        fig[mode] = {
            "wall_s_median": round(statistics.median(walls), 3),
            "wall_s_min": min(walls),
            "wall_s_max": max(walls),
            "oauth_per_trial": [r["oauth"] for r in runs],
            "registry_per_trial": [r["registry"] for r in runs],
            "failed": sum(r["failed"] for r in runs),
            "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
        }
    if bench.daemon is None:
        fig["with_daemon"] = SKIP_DAEMON
    bench.figures["8_parallel_uv_installs"] = fig
