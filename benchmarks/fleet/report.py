"""Figure 13's targets (met or not) and its table."""

from __future__ import annotations

from typing import Any

from menda_credd import refresh

#: Scenario 1: every (host, domain) served within this multiple of pairs / R ...
READY_WITHIN = 1.5
#: ... with at most this many registry calls per (host, domain) (backlog Retry-After).
CALLS_PER_PAIR = 3
#: Scenario 2: the busiest minute of three days against the mean.
PEAK_OVER_MEAN = 1.5
#: ... and against the busiest minute of a perfectly flat random schedule of the same mean
#: (independent hosts: Poisson), which is all a refresh policy can reach.
FLOOR_MARGIN = 1.1
#: Scenario 3: a host's tries in the outage against one backoff sequence's (one try per
#: host per step, not one per domain); the longest gap between a host's tries.
TRIES_OVER_ONE_SEQUENCE = 1.5
GAP_CAP = refresh.BACKOFF_CAP + refresh.PROBE_POLL + 1.0


def targets(fig: Any) -> list[dict[str, Any]]:
    """The issue's targets for the daemon, from a figure made by ``scenarios.run_all``."""
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, goal: str, met: bool | None) -> None:
        rows.append({"target": name, "value": value, "goal": goal, "met": met})

    def at_most(name: str, value: float | None, bound: float, goal: str = "") -> None:
        add(name, value, goal or f"<= {bound:g}", value is not None and value <= bound)

    daemon = fig.get("daemon") if isinstance(fig, dict) else None
    if not isinstance(daemon, dict):
        add("13 fleet", fig, "a figure", None)
        return rows
    cold = daemon["cold_start"]
    limit = cold["rate_limit_alone_s"]
    at_most(
        "11.1 all pairs served (s)",
        cold["hosts_ready_all_s"],
        READY_WITHIN * limit,
        f"<= {READY_WITHIN} x {limit:.0f}",
    )
    at_most("11.1 calls per pair, max", cold["registry_calls_per_pair_max"], CALLS_PER_PAIR)
    at_most(
        "11.2 peak / mean exchanges (1 min)",
        daemon["steady_state"]["peak_over_mean"],
        PEAK_OVER_MEAN,
    )
    floor = daemon["steady_state"]["random_floor_peak_over_mean"]
    at_most(
        "11.2 peak / mean vs a flat random one",
        daemon["steady_state"]["peak_over_mean"],
        FLOOR_MARGIN * floor,
        f"<= {FLOOR_MARGIN} x {floor}",
    )
    out = daemon["outage"]
    bound = TRIES_OVER_ONE_SEQUENCE * out["one_backoff_sequence_tries"]
    at_most(
        "11.3 outage tries per host, max",
        out["calls_in_outage_per_host_max"],
        bound,
        f"<= {bound:.0f} (1.5 x one sequence)",
    )
    jittered = out["first_retry_gap_stdev_s"]
    add(
        "11.3 outage retry gaps (s)",
        f"max {out['retry_gap_max_s']}, 1st sd {jittered}",
        f"capped <= {GAP_CAP:.0f}, jittered",
        out["retry_gap_max_s"] <= GAP_CAP and bool(jittered),
    )
    add(
        "11.3 tokens run out in the outage",
        out["tokens_ran_out_in_outage"],
        "0",
        out["tokens_ran_out_in_outage"] == 0,
    )
    return rows


def _cold(key: str) -> list[tuple[str, Any]]:
    def ready(m: dict[str, Any]) -> str:
        c = m[key]
        return f"{c['hosts_ready_p99_s']:.0f} / {c['hosts_ready_all_s'] or 'never'}"

    return [
        ("  hosts ready p99 / all (s)", ready),
        (
            "  all vs pairs / R",
            lambda m: f"{m[key]['ready_all_vs_limit']} x {m[key]['rate_limit_alone_s']:.0f} s",
        ),
        (
            "  registry calls per pair mean / max",
            lambda m: (
                f"{m[key]['registry_calls_per_pair_mean']:.2f}"
                f" / {m[key]['registry_calls_per_pair_max']}"
            ),
        ),
        ("  calls per host (OAuth too)", lambda m: m[key]["calls_per_host_mean"]),
        (
            "  peak calls/s (admitted)",
            lambda m: f"{m[key]['peak_calls_per_s']} ({m[key]['peak_admitted_per_s']})",
        ),
        (
            "  requests failed / gave up at ceiling",
            lambda m: f"{m[key]['requests_failed']} / {m[key]['in_process_gave_up_at_ceiling']}",
        ),
    ]


def _steady(m: dict[str, Any]) -> dict[str, Any]:
    steady: dict[str, Any] = m["steady_state"]
    return steady


def _out(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = m["outage"]
    return out


ROWS: list[tuple[str, list[tuple[str, Any]]]] = [
    ("1 cold start, Retry-After = backlog", _cold("cold_start")),
    ("1 cold start, Retry-After = 1 s", _cold("cold_start_constant_retry_after")),
    (
        "2 steady state",
        [
            (
                "  window (h)",
                lambda m: f"{(_steady(m)['window_s'][1] - _steady(m)['window_s'][0]) / 3600:.0f}",
            ),
            (
                "  exchanges/s mean / peak (1 min)",
                lambda m: (
                    f"{_steady(m)['exchanges_per_s_mean']:.3f}"
                    f" / {_steady(m)['exchanges_per_s_peak_1min']:.3f}"
                ),
            ),
            ("  peak / mean (1 min)", lambda m: _steady(m)["peak_over_mean"]),
            ("  ... a flat random schedule's", lambda m: _steady(m)["random_floor_peak_over_mean"]),
            (
                "  peak / mean over 5, 15 min",
                lambda m: (
                    f"{_steady(m)['peak_over_mean_5min']}, {_steady(m)['peak_over_mean_15min']}"
                ),
            ),
            ("  exchanges per pair per day", lambda m: _steady(m)["exchanges_per_pair_per_day"]),
            (
                "  calls per host per day (OAuth too)",
                lambda m: _steady(m)["calls_per_host_per_day"],
            ),
            ("  refused (429) in the window", lambda m: _steady(m)["refused_in_window"]),
        ],
    ),
    (
        "3 30-min outage",
        [
            (
                "  hosts calling / calls",
                lambda m: f"{_out(m)['hosts_calling_in_outage']} / {_out(m)['calls_in_outage']}",
            ),
            (
                "  calls per host mean / max",
                lambda m: (
                    f"{_out(m)['calls_in_outage_per_host_mean']:.2f}"
                    f" / {_out(m)['calls_in_outage_per_host_max']}"
                ),
            ),
            ("  one backoff sequence's tries", lambda m: _out(m)["one_backoff_sequence_tries"]),
            (
                "  retry gap max, 1st-gap sd (s)",
                lambda m: f"{_out(m)['retry_gap_max_s']}, {_out(m)['first_retry_gap_stdev_s']}",
            ),
            (
                "  requests failed in it",
                lambda m: (
                    f"{_out(m)['requests_failed_in_outage']} of {_out(m)['requests_in_outage']}"
                ),
            ),
            ("  tokens run out in it", lambda m: _out(m)["tokens_ran_out_in_outage"]),
            ("  recovered after (s)", lambda m: _out(m)["recovery_s"]),
            (
                "  peak calls/s after (R), refused",
                lambda m: (
                    f"{_out(m)['peak_calls_per_s_after']} "
                    f"({_out(m)['rate_limit_per_s']:g}), {_out(m)['refused_after']}"
                ),
            ),
        ],
    ),
]


def table(fig: Any) -> str:
    """The scenarios side by side, daemon and in process (scenario 4)."""
    if not isinstance(fig, dict) or "daemon" not in fig:
        return f"13 fleet: {fig}"
    cold = fig["daemon"]["cold_start"]
    lines = [
        f"13 fleet: {cold['hosts']} hosts x {cold['domains']} domains, R = "
        f"{cold['rate_limit_per_s']:g}/s, 12 h registry tokens, simulated in "
        f"{fig.get('real_seconds')} s",
        f"{'':<40}{'daemon':>22}{'in process (4)':>22}",
    ]
    for title, rows in ROWS:
        lines.append(title)
        for label, pick in rows:
            cells = []
            for mode in ("daemon", "in_process"):
                try:
                    cells.append(str(pick(fig[mode])))
                except (KeyError, TypeError):
                    cells.append("-")
            lines.append(f"{label:<40}{cells[0]:>22}{cells[1]:>22}")
    return "\n".join(lines)
