"""Figures 1-4 and 10: one ``keyring get`` per process, round-robin against keyring's floor."""

from __future__ import annotations

import os
import statistics
from typing import Any

from benchmarks.harness import (
    BIN,
    CA_URL,
    PYPI_URL,
    SKIP_DAEMON,
    Bench,
    log,
    ratio_stats,
    summary,
    timed,
)


def measure(bench: Bench) -> None:
    peer_home = bench.mkhome("peer-home")
    peer_env = {
        "HOME": str(peer_home),
        "PATH": f"{bench.peer / 'bin'}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL_CODEARTIFACT": bench.aws.info["url"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    # keyrings.codeartifact reads [codeartifact] from keyring's config_root()/keyringrc.cfg
    cfg = peer_home / ".config" / "python_keyring"
    cfg.mkdir(parents=True)
    (cfg / "keyringrc.cfg").write_text("[codeartifact]\ntoken_duration = 3600\n")
    inproc_env = {**bench.env(bench.home), "MENDA_CREDD": "off"}
    commands: dict[str, tuple[list[str], dict[str, str], tuple[int, ...]]] = {
        "1_floor_keyring_only": (
            [str(bench.floor / "bin" / "keyring"), "get", PYPI_URL, "aws"],
            bench.env(bench.home, bench.floor / "bin"),
            (0, 1),
        ),
        "2_plugin_startup": (
            [str(BIN / "keyring"), "get", PYPI_URL, "aws"],
            bench.env(bench.home),
            (0, 1),
        ),
        "2b_plugin_startup_wheel_venv": (
            [str(bench.plugin / "bin" / "keyring"), "get", PYPI_URL, "aws"],
            bench.env(bench.home, bench.plugin / "bin"),
            (0, 1),
        ),
        "4_in_process_cached_menda_token": (
            [str(BIN / "keyring"), "get", CA_URL, "aws"],
            inproc_env,
            (0,),
        ),
        "10_peer_keyrings_codeartifact": (
            [str(bench.peer / "bin" / "keyring"), "get", CA_URL, "aws"],
            peer_env,
            (0,),
        ),
    }
    if bench.daemon is not None:
        commands["3_warm_daemon"] = (
            [str(BIN / "keyring"), "get", CA_URL, "aws"],
            bench.env(bench.home),
            (0,),
        )
        commands["3b_warm_daemon_wheel_venv"] = (
            [str(bench.plugin / "bin" / "keyring"), "get", CA_URL, "aws"],
            bench.env(bench.home, bench.plugin / "bin"),
            (0,),
        )
    # Warm-up: .pyc files, the disk-cached Menda token, the daemon's token.
    for cmd, env, ok in commands.values():
        for _ in range(1 if bench.quick else 2):
            timed(cmd, env, ok)
    bench.cloud.reset_counts()
    calls0 = bench.aws_calls()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    names = list(commands)
    log(f"figures 1-4, 10: {bench.rounds} interleaved rounds of {len(names)} commands")
    for r in range(bench.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate the start
        for name in order:
            cmd, env, ok = commands[name]
            wall, used = timed(cmd, env, ok)
            samples[name].append(wall)
            cpu[name].append(used)
    counts = bench.cloud.counts()
    floor = samples["1_floor_keyring_only"]
    floor_cpu = cpu["1_floor_keyring_only"]
    for name in names:
        fig: dict[str, Any] = {"command": " ".join(commands[name][0][1:])}
        fig.update(summary(samples[name]))
        fig["cpu_median_ms"] = round(statistics.median(cpu[name]) * 1000, 3)
        if name != "1_floor_keyring_only":
            fig["vs_floor"] = ratio_stats(samples[name], floor, cpu[name], floor_cpu)
        bench.figures[name] = fig
    bench.figures["4_in_process_cached_menda_token"]["cloud_calls_per_run"] = {
        "oauth": counts["oauth"] / bench.rounds,
        "registry": counts["registry"] / bench.rounds,
    }
    peer = bench.figures["10_peer_keyrings_codeartifact"]
    peer["aws_calls_per_run"] = (bench.aws_calls() - calls0) / bench.rounds
    peer["note"] = (
        "keyrings.codeartifact 2.x with boto3 against benchmarks/fake_codeartifact.py "
        "(AWS_ENDPOINT_URL_CODEARTIFACT); it caches nothing, so every run is a "
        "GetAuthorizationToken call"
    )
    if bench.daemon is not None:
        peer["ours_warm_daemon_vs_peer"] = ratio_stats(
            samples["3_warm_daemon"],
            samples["10_peer_keyrings_codeartifact"],
            cpu["3_warm_daemon"],
            cpu["10_peer_keyrings_codeartifact"],
        )
        bench.figures["3_warm_daemon"]["cloud_calls_total"] = counts["registry"]
    else:
        bench.figures["3_warm_daemon"] = SKIP_DAEMON
        bench.figures["3b_warm_daemon_wheel_venv"] = SKIP_DAEMON
        peer["ours_warm_daemon_vs_peer"] = SKIP_DAEMON
