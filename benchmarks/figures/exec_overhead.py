"""Figure 11: what ``menda-keyring exec`` costs with a warm daemon.

The same ``uv pip install`` (``--reinstall``, no cache: each run downloads from the fake
index and authenticates) two ways, interleaved: uv asking ``keyring`` (subprocess provider)
and ``menda-keyring exec -- uv ...`` with no keyring on PATH. Then exec on its own:
``menda-keyring exec -- /bin/true`` against ``/bin/true``, the overhead it adds to any
command (its start-up plus one token from the daemon), and against ``python -c pass``:
how much of that is the interpreter's own start-up.
"""

from __future__ import annotations

import statistics
import subprocess
from typing import Any

from benchmarks.harness import BIN, PY, SKIP_DAEMON, Bench, log, ratio_stats, summary, timed


def measure(bench: Bench) -> None:
    if bench.daemon is None:
        bench.figures["11_exec_overhead"] = SKIP_DAEMON
        return
    uv = str(BIN / "uv")
    keyring_bin = bench.tmp / "exec-keyring-bin"
    keyring_bin.mkdir(exist_ok=True)
    (keyring_bin / "keyring").symlink_to(BIN / "keyring")
    no_keyring_bin = bench.tmp / "exec-empty-bin"
    no_keyring_bin.mkdir(exist_ok=True)
    base = {**bench.uv_env(), "UV_INDEX_URL": bench.info["index_url"]}
    via_keyring = {**bench.env(bench.home, keyring_bin), **base}
    via_keyring["UV_KEYRING_PROVIDER"] = "subprocess"
    via_exec = {**bench.env(bench.home, no_keyring_bin), **base}
    via_exec["UV_KEYRING_PROVIDER"] = "disabled"
    venvs = {}
    for name in ("keyring", "exec"):
        venvs[name] = bench.tmp / f"exec-venv-{name}"
        subprocess.run(
            [uv, "venv", "-q", "--python", str(PY), str(venvs[name])],
            env=via_keyring,
            check=True,
            capture_output=True,
        )

    def install(name: str) -> list[str]:
        python = str(venvs[name] / "bin" / "python")
        return [uv, "pip", "install", "-q", "--reinstall", "--python", python, "menda-hello"]

    mk = str(BIN / "menda-keyring")
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "uv_keyring_provider": (install("keyring"), via_keyring),
        "uv_under_exec": ([mk, "exec", "--", *install("exec")], via_exec),
        "true": (["/bin/true"], via_exec),
        "python_startup": ([str(PY), "-c", "pass"], via_exec),
        "exec_true": ([mk, "exec", "--", "/bin/true"], via_exec),
    }
    for cmd, env in commands.values():  # warm-up: .pyc files, the daemon's token
        timed(cmd, env)
    rounds = 3 if bench.quick else 20
    log(f"figure 11: {rounds} interleaved rounds of {len(commands)} commands")
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, used = timed(*commands[name])
            samples[name].append(wall)
            cpu[name].append(used)
    fig: dict[str, Any] = {"rounds": rounds}
    for name in names:
        fig[name] = summary(samples[name])
    fig["uv_under_exec_vs_uv_keyring_provider"] = ratio_stats(
        samples["uv_under_exec"],
        samples["uv_keyring_provider"],
        cpu["uv_under_exec"],
        cpu["uv_keyring_provider"],
    )
    added = [a - b for a, b in zip(samples["exec_true"], samples["true"], strict=True)]
    fig["exec_adds_ms_median"] = round(statistics.median(added) * 1000, 3)
    fig["exec_adds_ms_min"] = round(min(added) * 1000, 3)
    fig["exec_true_vs_python_startup"] = ratio_stats(
        samples["exec_true"], samples["python_startup"], cpu["exec_true"], cpu["python_startup"]
    )
    bench.figures["11_exec_overhead"] = fig
