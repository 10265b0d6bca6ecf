"""The issue's four scenarios on a fleet, and the figures each one reports.

1. ``cold_start``: every host boots within a minute, R = 40/s: when 99 % and 100 % of
   hosts hold tokens, against the time the rate limit alone forces (pairs / R); calls per
   (host, domain) and per host; peak calls a second; callers that gave up.
2. ``steady_state``: the same fleet from that start for three days: registry exchanges a
   second, mean and peak over one-minute windows.
3. ``outage``: menda-cloud answers 503 for 30 minutes on the second day: calls during it
   per host, the time to recover, tokens that ran out, and the peak after it against R.
4. each of them with every ``keyring get`` in process (``daemon=False``).
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import multiprocessing.context
import statistics
import time
from collections import Counter
from dataclasses import replace
from typing import Any

from menda_credd import refresh

from .cloud import CloudConfig
from .fleet import Fleet, FleetConfig

HOUR = 3600.0
DAY = 24 * HOUR
#: The steady state is measured from here (the cold start is long over) ...
STEADY_FROM = 2 * HOUR
#: ... for three days with the daemon; in process nothing outlives a Menda access token
#: (1 h), so a few hours show the same rates at a fraction of the events.
STEADY_DAYS_DAEMON = 3.0
STEADY_HOURS_IN_PROCESS = 4.0
#: The outage comes once refreshes run at their steady rate (the first ones are spread from
#: the start on, see ``refresh.first_share``).
OUTAGE_AT = 3 * HOUR
OUTAGE_LENGTH = 1800.0
AFTER_OUTAGE = 2 * HOUR
COLD_START_HORIZON = 4 * HOUR


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def windows(per_second: Counter[int], start: float, end: float, width: int = 60) -> list[int]:
    """Counts in consecutive ``width``-second windows of [start, end)."""
    first, last = int(start), int(end)
    return [
        sum(per_second.get(s, 0) for s in range(w, min(w + width, last)))
        for w in range(first, last, width)
    ]


def run_until_served(fleet: Fleet, horizon: float, step: float = 10.0) -> float | None:
    """Run until every (host, domain) was served once; the time then, or None at the horizon."""
    t = 0.0
    while t < horizon:
        t += step
        fleet.run(t)
        if fleet.unserved == 0:
            return max(x for x in fleet.first_served if x is not None)
    return None


def cold_start(config: FleetConfig, fleet: Fleet | None = None) -> dict[str, Any]:
    """Scenario 1; leaves ``fleet`` (when given) running for :func:`steady_state`."""
    cpu = time.process_time()
    fleet = fleet or Fleet(config)
    fleet.boot()
    all_served = run_until_served(fleet, COLD_START_HORIZON)
    hosts, domains = config.hosts, config.domains
    pairs = hosts * domains
    limit = pairs / config.cloud.rate
    host_ready = [
        max(
            (x if x is not None else math.inf)
            for x in fleet.first_served[h * domains : (h + 1) * domains]
        )
        for h in range(hosts)
    ]
    calls = fleet.calls
    per_second = fleet.cloud.registry_per_second
    return {
        "hosts": hosts,
        "domains": domains,
        "rate_limit_per_s": config.cloud.rate,
        "retry_after": config.cloud.retry_after,
        "rate_limit_alone_s": round(limit, 1),
        "hosts_ready_p99_s": round(percentile(host_ready, 0.99), 1),
        "hosts_ready_all_s": None if all_served is None else round(all_served, 1),
        "ready_all_vs_limit": None if all_served is None else round(all_served / limit, 3),
        "registry_calls_per_pair_max": max(calls),
        "registry_calls_per_pair_mean": round(sum(calls) / pairs, 3),
        "registry_calls_per_pair_histogram": {str(k): v for k, v in sorted(Counter(calls).items())},
        "calls_per_host_mean": round((sum(calls) + fleet.oauth_calls) / hosts, 2),
        "oauth_calls_per_host_mean": round(fleet.oauth_calls / hosts, 2),
        "peak_calls_per_s": max(per_second.values(), default=0),
        "peak_admitted_per_s": max(fleet.cloud.admitted_per_second.values(), default=0),
        "requests": fleet.tallies["requests"],
        "requests_failed": fleet.tallies["requests_failed"],
        "in_process_gave_up_at_ceiling": fleet.tallies["in_process_gave_up_at_ceiling"],
        "in_process_failed_otherwise": fleet.tallies["in_process_failed"],
        "simulated_s": round(fleet.loop.now, 1),
        "events": fleet.loop.events,
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def steady_state(
    config: FleetConfig, fleet: Fleet, days: float = STEADY_DAYS_DAEMON
) -> dict[str, Any]:
    """Scenario 2, continuing the fleet of scenario 1 (a synchronised start is the hard case)."""
    cpu = time.process_time()
    length = days * DAY if config.daemon else STEADY_HOURS_IN_PROCESS * HOUR
    end = STEADY_FROM + length
    fleet.run(STEADY_FROM)
    calls_before = sum(fleet.calls) + fleet.oauth_calls
    failed_before = fleet.tallies["requests_failed"]
    fleet.run(end)
    counts = windows(fleet.cloud.admitted_per_second, STEADY_FROM, end)
    total = sum(counts)
    days = length / DAY
    mean = total / length
    peak = max(counts) / 60
    coarse = {
        width: max(windows(fleet.cloud.admitted_per_second, STEADY_FROM, end, width)) / width / mean
        for width in (300, 900)
        if mean
    }
    arrived = sum(
        fleet.cloud.registry_per_second.get(s, 0) for s in range(int(STEADY_FROM), int(end))
    )
    return {
        "hosts": config.hosts,
        "window_s": [STEADY_FROM, end],
        "exchanges_per_s_mean": round(mean, 3),
        "exchanges_per_s_peak_1min": round(peak, 3),
        "peak_over_mean": round(peak / mean, 3) if mean else None,
        "random_floor_peak_over_mean": round(poisson_peak(mean * 60, len(counts)) / (mean * 60), 3)
        if mean
        else None,
        "peak_over_mean_5min": round(coarse[300], 3) if mean else None,
        "peak_over_mean_15min": round(coarse[900], 3) if mean else None,
        "exchanges_per_pair_per_day": round(total / (config.hosts * config.domains) / days, 3),
        "calls_per_host_per_day": round(
            (sum(fleet.calls) + fleet.oauth_calls - calls_before) / config.hosts / days, 2
        ),
        "refused_in_window": arrived - total,
        "requests_failed": fleet.tallies["requests_failed"] - failed_before,
        "events": fleet.loop.events,
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def poisson_peak(mean: float, windows: int) -> int:
    """The median busiest of ``windows`` windows when each holds Poisson(``mean``) events.

    Exchanges of independent hosts form a Poisson process however flat each host's schedule
    (the Palm-Khintchine theorem), so this is the floor no refresh policy can go below.
    """
    cdf, k = 0.0, 0
    term = math.exp(-mean)
    while True:
        cdf += term
        if cdf**windows >= 0.5:
            return k
        k += 1
        term *= mean / k


def one_host_tries(length: float) -> int:
    """Tries one backoff sequence makes in ``length`` seconds at the mean of its jitter: the
    yardstick for "at most one try per host per backoff step"."""
    t, tries = 0.0, 1
    while True:
        t += refresh.retry_delay(tries, 0.5)
        if t >= length:
            return tries
        tries += 1


def outage(config: FleetConfig) -> dict[str, Any]:
    """Scenario 3: 503 for every call for 30 minutes, then two hours of recovery."""
    cpu = time.process_time()
    start, end = OUTAGE_AT, OUTAGE_AT + OUTAGE_LENGTH
    config = replace(config, cloud=replace(config.cloud, outage=(start, end)))
    fleet = Fleet(config)
    fleet.boot()
    fleet.run(start)
    fleet.call_log = []
    fleet.run(end)
    during, fleet.call_log = fleet.call_log, []
    fleet.run(end + AFTER_OUTAGE)
    after, fleet.call_log = fleet.call_log, None
    per_host = Counter(host for _t, host, _pair in during)
    tried = {host for _t, host, _pair in during}
    # Recovered: every host that tried during the outage got a registry token after it.
    recovered: dict[int, float] = {}
    for t, host, pair in after:
        if host in tried and host not in recovered and pair >= 0:
            recovered[host] = t
    per_second = fleet.cloud.registry_per_second
    admitted = fleet.cloud.admitted_per_second
    after_range = range(int(end), int(end + AFTER_OUTAGE))
    first_gaps = first_retry_gaps(during)
    return {
        "hosts": config.hosts,
        "outage_s": [start, end],
        "hosts_calling_in_outage": len(tried),
        "calls_in_outage": len(during),
        "oauth_calls_in_outage": sum(1 for _t, _h, pair in during if pair < 0),
        "calls_in_outage_per_host_mean": round(len(during) / config.hosts, 3),
        "calls_in_outage_per_calling_host_mean": round(len(during) / len(tried), 2) if tried else 0,
        "calls_in_outage_per_host_max": max(per_host.values(), default=0),
        "one_backoff_sequence_tries": one_host_tries(OUTAGE_LENGTH),
        "first_retry_gap_stdev_s": round(statistics.pstdev(first_gaps), 2)
        if len(first_gaps) > 1
        else None,
        "retry_gap_max_s": round(max_gap(during), 1),
        "hosts_unrecovered": len(tried - set(recovered)),
        "recovery_s": round(max(recovered.values(), default=end) - end, 1),
        "tokens_ran_out_in_outage": sum(1 for g in fleet.gaps if start <= g[0] < end),
        "requests_in_outage": fleet.tallies["requests_in_outage"],
        "requests_failed_in_outage": fleet.tallies["requests_failed_in_outage"],
        "peak_calls_per_s_after": max((per_second.get(s, 0) for s in after_range), default=0),
        "peak_admitted_per_s_after": max((admitted.get(s, 0) for s in after_range), default=0),
        "refused_after": sum(per_second.get(s, 0) - admitted.get(s, 0) for s in after_range),
        "rate_limit_per_s": config.cloud.rate,
        "events": fleet.loop.events,
        "cpu_s": round(time.process_time() - cpu, 2),
    }


def first_retry_gaps(log: list[tuple[float, int, int]]) -> list[float]:
    """Per host, the time from its first call in the log to its second."""
    seen: dict[int, float] = {}
    gaps: dict[int, float] = {}
    for t, host, _pair in log:
        if host in seen and host not in gaps:
            gaps[host] = t - seen[host]
        seen.setdefault(host, t)
    return list(gaps.values())


def max_gap(log: list[tuple[float, int, int]]) -> float:
    """The longest time between two calls of one host in the log."""
    last: dict[int, float] = {}
    gap = 0.0
    for t, host, _pair in log:
        if host in last:
            gap = max(gap, t - last[host])
        last[host] = t
    return gap


def size(quick: bool, hosts: int | None = None) -> dict[str, Any]:
    """The fleet of a full run (the issue's 10,000 hosts) or of a quick one."""
    if quick:
        return {"hosts": hosts or 1_000, "steady_days": 1.0}
    return {"hosts": hosts or 10_000, "steady_days": STEADY_DAYS_DAEMON}


def run_all(
    hosts: int = 10_000,
    seed: int = 13,
    steady_days: float = STEADY_DAYS_DAEMON,
    parallel: bool = True,
) -> dict[str, Any]:
    """Every scenario, with the daemon and in process; ``hosts`` scales the fleet and R.

    ``parallel``: the daemon's scenarios and the in-process ones run in two processes (the
    two fleets share nothing), which halves the wall time on two cores.
    """
    wall = time.perf_counter()
    jobs = [(hosts, seed, steady_days, True), (hosts, seed, steady_days, False)]
    if parallel:
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=_fork()) as pool:
            daemon, in_process = pool.map(run_mode, *zip(*jobs, strict=True))
    else:
        daemon, in_process = (run_mode(*job) for job in jobs)
    return {
        "method": METHOD,
        "daemon": daemon,
        "in_process": in_process,
        "real_seconds": round(time.perf_counter() - wall, 1),
    }


def _fork() -> multiprocessing.context.BaseContext | None:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork") if "fork" in methods else None


def run_mode(hosts: int, seed: int, steady_days: float, daemon: bool) -> dict[str, Any]:
    """Scenarios 1-3 for one mode: with the daemon, or every call in process (scenario 4)."""
    scale = hosts / 10_000
    cloud = CloudConfig(rate=40.0 * scale, burst=max(40.0 * scale, 1.0))
    config = FleetConfig(hosts=hosts, seed=seed, cloud=cloud, daemon=daemon)
    constant = replace(config, cloud=replace(cloud, retry_after="constant"))
    fleet = Fleet(config)
    return {
        "cold_start": cold_start(config, fleet),
        "steady_state": steady_state(config, fleet, steady_days),
        "cold_start_constant_retry_after": cold_start(constant),
        "outage": outage(config),
    }


METHOD = (
    "discrete-event simulation (benchmarks/fleet): the real resolution flow, retry policy, "
    "serving margins and refresh timing per host; the broker modelled with its own functions; "
    "menda-cloud a token bucket of R registry exchanges/s answering 429 with Retry-After"
)
