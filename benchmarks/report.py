"""The benchmark's report: targets met or not, and the table printed after a run."""

from __future__ import annotations

from typing import Any

from benchmarks.fleet import report as fleet_report

TARGETS = {
    "2_plugin_startup": 1.02,
    "2b_plugin_startup_wheel_venv": 1.02,
    "3_warm_daemon": 1.05,
    "3b_warm_daemon_wheel_venv": 1.05,
    "4_in_process_cached_menda_token": 1.3,
}


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def targets(f: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, met: bool | None) -> None:
        rows.append({"target": name, "value": value, "goal": target, "met": met})

    for key, bound in TARGETS.items():
        ratio = _get(f, key, "vs_floor", "ratio")
        add(
            f"{key} ratio vs floor", ratio, f"<= {bound}", None if ratio is None else ratio <= bound
        )
    p50 = _get(f, "5_latency_in_process", "keyring_get_password", "p50_us")
    p99 = _get(f, "5_latency_in_process", "keyring_get_password", "p99_us")
    add("5 get_password p50 (us)", p50, "<= 200", None if p50 is None else p50 <= 200)
    add("5 get_password p99 (us)", p99, "<= 1000", None if p99 is None else p99 <= 1000)
    rate = _get(f, "6_throughput_rss_idle", "hot_64_connections", "answers_per_s")
    add("6 answers/s, 64 connections", rate, ">= 5000", None if rate is None else rate >= 5000)
    rss = [
        _get(f, "6_throughput_rss_idle", k)
        for k in ("rss_mb_after_hot", "rss_mb_after_many", "rss_mb_after_idle")
    ]
    rss_max = max((r for r in rss if r is not None), default=None)
    add("6 daemon RSS max (MB)", rss_max, "<= 50", None if rss_max is None else rss_max <= 50)
    idle = _get(f, "6_throughput_rss_idle", "idle_cpu_seconds_schedstat")
    if idle is None or idle < 0:
        idle = _get(f, "6_throughput_rss_idle", "idle_cpu_seconds")
    secs = _get(f, "6_throughput_rss_idle", "idle_seconds")
    add(f"6 idle CPU s over {secs} s", idle, "< 0.1 per 60 s", None if idle is None else idle < 0.1)
    with_d = _get(f, "7_cold_herd", "with_daemon")
    if isinstance(with_d, dict):
        value = f"{with_d['oauth']} oauth + {with_d['registry']} registry"
        ok = with_d["oauth"] == 1 and with_d["registry"] == 1 and not with_d["failed"]
        add("7 herd with daemon", value, "1 + 1", ok)
    else:
        add("7 herd with daemon", with_d, "1 + 1", None)
    without = _get(f, "7_cold_herd", "without_daemon")
    if isinstance(without, dict):
        add("7 herd without daemon: oauth", without["oauth"], "1", without["oauth"] == 1)
    for name in ("12h", "1h"):
        sim = _get(f, "9_simulated_day", name)
        if isinstance(sim, dict):
            add(
                f"9 exchanges/pair/day, {name} tokens",
                sim["registry_exchanges_per_pair_max"],
                f"<= {sim['bound_per_pair']}",
                sim["within_bound"],
            )
    out = _get(f, "9_simulated_day", "12h_outage", "outage")
    if isinstance(out, dict):
        add(
            "9 30-min outage (12h tokens): served",
            f"{out['served_in_outage']}/{out['requests_in_outage']}, max gap "
            f"{out['refresh_attempt_gap_max_s']} s",
            "all served, gaps capped",
            out["kept_serving"]
            and (out["refresh_attempt_gap_max_s"] or 0) <= 65
            and out["retry_gap_stdev_s"] not in (None, 0),
        )
    rows.extend(working_week_targets(f.get("12_working_week")))
    peer = _get(f, "10_peer_keyrings_codeartifact", "ours_warm_daemon_vs_peer", "ratio")
    add(
        "10 warm daemon vs keyrings.codeartifact",
        peer,
        "<= 0.5",
        None if peer is None else peer <= 0.5,
    )
    ex = _get(f, "11_exec_overhead")
    if isinstance(ex, dict):
        adds = ex["exec_adds_ms_median"]
        add("11 exec adds to a command (ms)", adds, "<= 50", adds <= 50)
        add(
            "11 uv under exec vs uv + keyring provider",
            ex["uv_under_exec_vs_uv_keyring_provider"]["ratio"],
            "reported",
            None,
        )
    rows.extend(fleet_report.targets(f.get("13_fleet")))
    return rows


#: Figure 12's modes, as its rows name them.
WEEK_MODES = {
    "daemon": "daemon all week",
    "daemon_per_login": "daemon per login",
    "in_process": "in process",
}


def working_week_targets(week: Any) -> list[dict[str, Any]]:
    """Figure 12's rows: no sign-in lost, no refresh token used twice, and with the daemon
    left running every first ask of the day answered from memory. The rest is reported."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, met: bool | None) -> None:
        rows.append({"target": f"12 {name}", "value": value, "goal": target, "met": met})

    if not isinstance(week, dict):
        add("working week", week, "figure ran", None)
        return rows
    for mode, name in WEEK_MODES.items():
        w = _get(week, mode, "week")
        if not isinstance(w, dict):
            add(f"{name}: NoCachedLoginError", None, "0", None)
            continue
        errors = w["no_cached_login_errors"]
        add(f"{name}: NoCachedLoginError", errors, "0", errors == 0 and w["asks"] > 0)
        reused = week[mode]["refresh_tokens_reused"]
        add(f"{name}: refresh token reuse", reused, "0", reused == 0)
        waited = f"{w['first_asks_that_waited']}/{w['first_asks_of_the_day']}"
        if mode == "daemon":
            met = w["first_asks_that_waited"] == 0 and w["first_asks_of_the_day"] > 0
            add(f"{name}: first asks waited", waited, "0", met)
        else:
            add(f"{name}: first asks waited", waited, "reported", None)
        if mode == "daemon_per_login":
            warm = w.get("start_to_warm_s_max")
            add(f"{name}: start to warm s", warm, "reported", None)
    return rows


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(result: dict[str, Any]) -> str:
    f = result["figures"]
    lines = []
    m = result["machine"]
    lines.append(f"machine: {m['uname']}")
    lines.append(f"cpu: {m['cpu_model']}  nproc: {m['nproc']}  python: {m['python']}  {m['uv']}")
    lines.append(f"mode: {result['mode']}, rounds: {result['rounds']}, daemon: {result['daemon']}")
    lines.append(
        f"load average at start {result.get('loadavg_start')}, at end {result.get('loadavg_end')}"
        " (other work on the machine shows up in wall times; CPU ratios resist it)"
    )
    lines.append("")
    lines.append(
        f"{'figure':<38}{'median ms':>10}{'min':>8}{'max':>8}{'ratio':>8}"
        f"{'pair min':>9}{'pair max':>9}{'min/min':>8}{'cpu ms':>8}{'cpu ratio':>10}"
    )
    for key in (
        "1_floor_keyring_only",
        "2_plugin_startup",
        "2b_plugin_startup_wheel_venv",
        "3_warm_daemon",
        "3b_warm_daemon_wheel_venv",
        "4_in_process_cached_menda_token",
        "10_peer_keyrings_codeartifact",
    ):
        fig = f.get(key)
        if not isinstance(fig, dict):
            lines.append(f"{key:<38}{fig}")
            continue
        r = fig.get("vs_floor", {})
        lines.append(
            f"{key:<38}{fmt(fig['median_ms']):>10}{fmt(fig['min_ms']):>8}{fmt(fig['max_ms']):>8}"
            f"{fmt(r.get('ratio', 1.0)):>8}{fmt(r.get('paired_ratio_min', '')):>9}"
            f"{fmt(r.get('paired_ratio_max', '')):>9}{fmt(r.get('ratio_of_minima', '')):>8}"
            f"{fmt(fig.get('cpu_median_ms', '')):>8}{fmt(r.get('cpu_ratio', '')):>10}"
        )
    peer = _get(f, "10_peer_keyrings_codeartifact", "ours_warm_daemon_vs_peer")
    if isinstance(peer, dict):
        lines.append(
            f"{'  warm daemon / keyrings.codeartifact':<38}{'':>26}{fmt(peer['ratio']):>8}"
            f"{fmt(peer['paired_ratio_min']):>9}{fmt(peer['paired_ratio_max']):>9}"
            f"{fmt(peer['ratio_of_minima']):>8}{'':>8}{fmt(peer.get('cpu_ratio', '')):>10}"
        )
    lat = f.get("5_latency_in_process")
    lines.append("")
    if isinstance(lat, dict):
        for name in (
            "keyring_get_password",
            "echo_reference",
            "keyring_get_password_via_echo",
            "echo_reference_persistent_connection",
        ):
            s = lat[name]
            lines.append(
                f"5 {name:<37} n={s['n']} p50 {s['p50_us']:.0f} us  p90 {s['p90_us']:.0f} us  "
                f"p99 {s['p99_us']:.0f} us  min {s['min_us']:.0f}  max {s['max_us']:.0f}"
            )
    else:
        lines.append(f"5 latency: {lat}")
    tp = f.get("6_throughput_rss_idle")
    if isinstance(tp, dict):
        hot, many = tp["hot_64_connections"], tp["many_identities"]
        lines.append(
            f"6 hot: {hot['answers_per_s']:.0f} answers/s over {hot['seconds']:.1f} s "
            f"({hot['errors']} errors), daemon CPU {tp['hot_daemon_cpu_share']:.2f} cores"
        )
        lines.append(
            f"6 many: {many['answers']} answers over {many['identities_and_domains']} identities x "
            f"domains in {many['seconds']:.1f} s ({many['answers_per_s']:.0f}/s, {many['errors']} "
            f"errors), cloud {many['cloud_oauth']} oauth + {many['cloud_registry']} registry; "
            f"cold first touch {many['cold_first_touch']['answers_per_s']:.0f}/s, warm "
            f"{many['warm']['answers_per_s']:.0f}/s ({many['cloud_calls_during_warm']} cloud calls)"
        )
        lines.append(
            f"6 RSS MB: start {tp['rss_mb_start']}, after hot {tp['rss_mb_after_hot']}, after many "
            f"{tp['rss_mb_after_many']}, after idle {tp['rss_mb_after_idle']}; idle CPU "
            f"{tp['idle_cpu_seconds']} s ({tp['idle_cpu_seconds_schedstat']} s by schedstat) over "
            f"{tp['idle_seconds']} s"
        )
    else:
        lines.append(f"6 throughput: {tp}")
    herd = f.get("7_cold_herd", {})
    for mode in ("without_daemon", "with_daemon"):
        h = herd.get(mode)
        if isinstance(h, dict):
            lines.append(
                f"7 herd of {herd['processes']} {mode}: {h['oauth']} oauth + "
                f"{h['registry']} registry, "
                f"wall {h['wall_s']} s, {h['failed']} failed"
            )
        else:
            lines.append(f"7 herd {mode}: {h}")
    uvf = f.get("8_parallel_uv_installs", {})
    for mode in ("without_daemon", "with_daemon"):
        u = uvf.get(mode)
        if isinstance(u, dict):
            lines.append(
                f"8 {uvf['installs']} uv installs {mode}: wall median {u['wall_s_median']} s "
                f"(min {u['wall_s_min']}, max {u['wall_s_max']}), oauth {u['oauth_per_trial']}, "
                f"registry {u['registry_per_trial']}, {u['failed']} failed"
            )
        else:
            lines.append(f"8 uv {mode}: {u}")
    ex = f.get("11_exec_overhead")
    if isinstance(ex, dict):
        lines.append(
            f"11 uv pip install: keyring provider {ex['uv_keyring_provider']['median_ms']} ms, "
            f"under exec {ex['uv_under_exec']['median_ms']} ms (ratio "
            f"{ex['uv_under_exec_vs_uv_keyring_provider']['ratio']}); exec -- /bin/true adds "
            f"{ex['exec_adds_ms_median']} ms (min {ex['exec_adds_ms_min']}), "
            f"{ex['exec_true_vs_python_startup']['ratio']}x python -c pass"
        )
    else:
        lines.append(f"11 exec overhead: {ex}")
    sim = f.get("9_simulated_day")
    if isinstance(sim, dict):
        for name in ("12h", "1h", "12h_outage", "1h_outage", "12h_outage_one_try_per_refresh"):
            s = sim.get(name)
            if not isinstance(s, dict):
                continue
            text = (
                f"9 {name:<10} exchanges/pair {s['registry_exchanges_per_pair_min']}-"
                f"{s['registry_exchanges_per_pair_max']} (bound {s['bound_per_pair']}), "
                f"served {s['requests_served']}, unserved {s['requests_unserved']}"
            )
            o = s.get("outage")
            if o:
                text += (
                    f"; outage: {o['served_in_outage']}/{o['requests_in_outage']} served, "
                    f"{o['pairs_refreshing_in_outage']} pairs refreshing, attempts/pair max "
                    f"{o['refresh_attempts_in_outage_per_pair_max']}, http calls "
                    f"{o['http_calls_in_outage_oauth']} oauth + "
                    f"{o['http_calls_in_outage_registry']} registry, gaps "
                    f"{o['refresh_attempt_gap_min_s']}-{o['refresh_attempt_gap_max_s']} s "
                    f"between the daemon's {o['daemon_tries_in_outage']} tries (sd "
                    f"{o['retry_gap_stdev_s']} s)"
                )
            lines.append(text)
    else:
        lines.append(f"9 simulated day: {sim}")
    week = f.get("12_working_week")
    if isinstance(week, dict):
        for mode, name in WEEK_MODES.items():
            w = _get(week, mode, "week")
            if not isinstance(w, dict):
                continue
            text = (
                f"12 {name:<17} {w['asks']} asks: {w['refresh_calls']} refresh + "
                f"{w['registry_exchanges']} registry calls, {w['asks_that_waited']} asks waited "
                f"({w['first_asks_that_waited']}/{w['first_asks_of_the_day']} first of the day), "
                f"{w['no_cached_login_errors']} NoCachedLoginError"
            )
            if "daemon_starts" in w:
                text += (
                    f"; start to warm median {w['start_to_warm_s_median']} s, "
                    f"max {w['start_to_warm_s_max']} s"
                )
            lines.append(text)
        learning = _get(week, "daemon", "learning_week")
        if isinstance(learning, dict):
            lines.append(
                f"12 (the learning week before, daemon left running: "
                f"{learning['first_asks_that_waited']}/{learning['first_asks_of_the_day']} "
                f"first asks waited, {learning['refresh_calls']} refresh + "
                f"{learning['registry_exchanges']} registry calls)"
            )
    else:
        lines.append(f"12 working week: {week}")
    lines.append(fleet_report.table(f.get("13_fleet")))
    lines.append("")
    lines.append(f"{'target':<44}{'value':>32}  {'goal':<24}met")
    for row in result["targets"]:
        met = {True: "yes", False: "NO", None: "-"}[row["met"]]
        lines.append(f"{row['target']:<44}{fmt(row['value']):>32}  {row['goal']:<24}{met}")
    for name, err in result.get("errors", {}).items():
        lines.append(f"ERROR in {name}: {err[:300]}")
    lines.append(f"steps (s): {result.get('step_seconds')}; total {result['total_seconds']} s")
    return "\n".join(lines)
