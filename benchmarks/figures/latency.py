"""Figure 5: in-process latency through the daemon, against a bare echo."""

from __future__ import annotations

import json
import subprocess

from benchmarks.harness import CA_URL, PY, ROOT, SKIP_DAEMON, Bench, log


def measure(bench: Bench) -> None:
    if bench.daemon is None:
        bench.figures["5_latency_in_process"] = SKIP_DAEMON
        return
    calls = 300 if bench.quick else 2000
    echo_sock = bench.tmp / "echo.sock"
    echo = subprocess.Popen(
        [str(PY), "-m", "benchmarks.echo_server", str(echo_sock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert echo.stdout is not None
        echo.stdout.readline()
        log(f"figure 5: {calls} keyring.get_password calls through the daemon, and echo")
        out = subprocess.run(
            [
                str(PY),
                "-m",
                "benchmarks.latency",
                "--url",
                CA_URL,
                "--echo-socket",
                str(echo_sock),
                "--calls",
                str(calls),
            ],
            env=bench.env(bench.home),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        assert echo.stdin is not None
        echo.stdin.close()
        echo.wait(10)
    if out.returncode != 0:
        raise RuntimeError(f"latency.py failed: {out.stdout}{out.stderr[-2000:]}")
    bench.figures["5_latency_in_process"] = json.loads(out.stdout)
