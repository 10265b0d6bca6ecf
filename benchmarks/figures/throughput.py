"""Figure 6: throughput of the daemon, its RSS after load and its idle CPU."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from benchmarks.harness import (
    CA_URL,
    OWNER,
    PY,
    ROOT,
    SKIP_DAEMON,
    Bench,
    cpu_ns,
    cpu_seconds,
    log,
    rss_mb,
)


def loadgen(bench: Bench, spec: list[tuple[str, dict[str, str]]], **kw: Any) -> dict[str, Any]:
    spec_file = bench.tmp / "spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [
        str(PY),
        "-m",
        "benchmarks.loadgen",
        "--socket",
        str(bench.sock),
        "--spec",
        str(spec_file),
    ]
    for key, value in kw.items():
        cmd += [f"--{key}", str(value)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def measure(bench: Bench) -> None:
    if bench.daemon is None:
        bench.figures["6_throughput_rss_idle"] = SKIP_DAEMON
        return
    pid = bench.daemon.pid
    fig: dict[str, Any] = {"daemon_pid": pid, "rss_mb_start": round(rss_mb(pid), 2)}
    seconds = 1.0 if bench.quick else 10.0
    one = [(CA_URL, {**bench.env(bench.home), "MENDA_CREDD_SOCKET": ""})]
    for entry in one:
        entry[1].pop("MENDA_CREDD_SOCKET")
        entry[1].pop("PATH")
        entry[1].pop("LANG")
    log(f"figure 6: 64 connections for {seconds} s, one identity")
    cpu0 = cpu_seconds(pid)
    run = loadgen(bench, one, connections=64, seconds=seconds)
    fig["hot_64_connections"] = run
    fig["hot_daemon_cpu_share"] = round((cpu_seconds(pid) - cpu0) / run["seconds"], 3)
    fig["rss_mb_after_hot"] = round(rss_mb(pid), 2)

    n_ids = 50 if bench.quick else 1000
    total = 5000 if bench.quick else 100_000
    log(f"figure 6: registering {n_ids} clients and domains in the fake")
    spec = []
    many_home = bench.mkhome("many-home")
    for i in range(n_ids):
        client, secret, domain = f"many-{i}", f"sec-{i}", f"bench-dom-{i}"
        bench.cloud.add_client(client, secret)
        bench.cloud.add_domain(domain, OWNER)
        url = (
            f"https://aws@{domain}-{OWNER}.d.codeartifact.eu-west-1.amazonaws.com"
            "/pypi/menda-plugins/simple/"
        )
        env = bench.env(many_home, client=client, secret=secret)
        for key in ("MENDA_CREDD_SOCKET", "PATH", "LANG"):
            env.pop(key)
        spec.append((url, env))
    bench.cloud.reset_counts()
    log(f"figure 6: {total} requests over {n_ids} identities x domains, 64 connections")
    # First touch of every entry (cold: one OAuth + one registry exchange each), then
    # the rest warm; reported apart and together.
    cold = loadgen(bench, spec, connections=64, requests=n_ids)
    counts = bench.cloud.counts()
    warm = loadgen(bench, spec, connections=64, requests=total - n_ids)
    counts_after = bench.cloud.counts()
    seconds = cold["seconds"] + warm["seconds"]
    answers = cold["answers"] + warm["answers"]
    fig["many_identities"] = {
        "answers": answers,
        "errors": cold["errors"] + warm["errors"],
        "first_error": cold["first_error"] or warm["first_error"],
        "seconds": seconds,
        "answers_per_s": answers / seconds if seconds else 0.0,
        "cold_first_touch": cold,
        "warm": warm,
        "identities_and_domains": n_ids,
        "cloud_oauth": counts_after["oauth"],
        "cloud_registry": counts_after["registry"],
        "cloud_calls_during_warm": counts_after["oauth"]
        + counts_after["registry"]
        - counts["oauth"]
        - counts["registry"],
    }
    fig["rss_mb_after_many"] = round(rss_mb(pid), 2)
    status = bench.daemon.cli_status_json()
    # status lists at most its cap of entry rows; the summary counts them all.
    fig["daemon_entries"] = status.get("summary", {}).get("entries", len(status["entries"]))
    fig["daemon_counters"] = status.get("counters")
    idle = 3.0 if bench.quick else 60.0
    log(f"figure 6: {idle} s idle")
    cpu0, ns0 = cpu_seconds(pid), cpu_ns(pid)
    time.sleep(idle)
    fig["idle_seconds"] = idle
    fig["idle_cpu_seconds"] = round(cpu_seconds(pid) - cpu0, 4)
    fig["idle_cpu_seconds_schedstat"] = round((cpu_ns(pid) - ns0) / 1e9, 6)
    fig["rss_mb_after_idle"] = round(rss_mb(pid), 2)
    bench.figures["6_throughput_rss_idle"] = fig
