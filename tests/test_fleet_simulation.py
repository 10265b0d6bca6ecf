"""Figure 13's simulation: a small fleet runs in seconds, its figures hang together, and the
targets can fail, both on paper (the target logic) and in the simulation (a worse policy)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from benchmarks.fleet import report, scenarios
from benchmarks.fleet.cloud import CloudConfig
from benchmarks.fleet.fleet import Fleet, FleetConfig
from menda_credd import refresh

pytestmark = pytest.mark.bench

#: 200 hosts x 3 domains at 2 exchanges/s: the rate limit alone takes 300 s.
SMALL = FleetConfig(hosts=200, cloud=CloudConfig(rate=2.0, burst=10.0))


def test_a_cold_start_keeps_its_place_in_the_rate_limit() -> None:
    cold = scenarios.cold_start(SMALL)
    assert cold["rate_limit_alone_s"] == 300.0
    assert cold["hosts_ready_all_s"] is not None
    assert cold["hosts_ready_p99_s"] <= cold["hosts_ready_all_s"]
    # The first job's callers mostly gave up (a 30 s ceiling against 300 s of backlog), yet
    # the daemons held every token soon after the limit allows, at about two calls a pair.
    assert cold["requests_failed"] > SMALL.hosts
    assert cold["hosts_ready_all_s"] <= report.READY_WITHIN * cold["rate_limit_alone_s"]
    assert 1.0 <= cold["registry_calls_per_pair_mean"] <= 3.0
    assert cold["peak_admitted_per_s"] <= SMALL.cloud.burst + SMALL.cloud.rate


def test_without_keeping_its_place_the_fleet_waits_for_the_next_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The policy before this figure: an entry left without a token is dropped.
    monkeypatch.setattr(refresh, "keep_place_delay", lambda *_: None)
    cold = scenarios.cold_start(SMALL)
    ready = cold["hosts_ready_all_s"]
    assert ready is None or ready > report.READY_WITHIN * cold["rate_limit_alone_s"]
    rows = {r["target"]: r for r in report.targets(_figure(cold_start=cold))}
    assert rows["11.1 all pairs served (s)"]["met"] is False


def test_in_process_callers_share_one_oauth_exchange_per_host() -> None:
    generous = replace(SMALL, daemon=False, cloud=CloudConfig(rate=1000.0, burst=1000.0))
    cold = scenarios.cold_start(generous)
    # Three concurrent keyring get per host, one OAuth: the cache lock at work.
    assert cold["oauth_calls_per_host_mean"] == 1.0
    assert cold["registry_calls_per_pair_max"] == 1
    assert cold["requests_failed"] == 0


def test_steady_state_and_outage_of_a_small_fleet() -> None:
    fleet = Fleet(SMALL)
    scenarios.cold_start(SMALL, fleet)
    steady = scenarios.steady_state(SMALL, fleet, days=1.0)
    # 12 h tokens refreshed at 75-85 %: about 2.5 exchanges a day per (host, domain).
    assert 2.0 <= steady["exchanges_per_pair_per_day"] <= 3.5
    assert steady["requests_failed"] == 0
    out = scenarios.outage(SMALL)
    assert out["calls_in_outage"] > 0
    assert out["requests_failed_in_outage"] == 0  # 12 h tokens outlast 30 minutes
    assert out["tokens_ran_out_in_outage"] == 0
    assert out["hosts_unrecovered"] == 0
    assert out["calls_in_outage_per_host_max"] <= 1.5 * out["one_backoff_sequence_tries"]
    assert out["retry_gap_max_s"] <= report.GAP_CAP


def test_in_process_costs_menda_cloud_a_call_per_keyring_get() -> None:
    config = replace(SMALL, daemon=False)
    fleet = Fleet(config)
    scenarios.cold_start(config, fleet)
    steady = scenarios.steady_state(config, fleet)
    # A job an hour per host, three domains: about 24 exchanges a day per pair.
    assert steady["exchanges_per_pair_per_day"] > 15


def _figure(**daemon: Any) -> dict[str, Any]:
    good = {
        "cold_start": {
            "hosts_ready_all_s": 800.0,
            "rate_limit_alone_s": 750.0,
            "registry_calls_per_pair_max": 3,
        },
        "steady_state": {"peak_over_mean": 1.3, "random_floor_peak_over_mean": 1.4},
        "outage": {
            "one_backoff_sequence_tries": 65,
            "calls_in_outage_per_host_max": 70,
            "retry_gap_max_s": 60.0,
            "first_retry_gap_stdev_s": 0.3,
            "tokens_ran_out_in_outage": 0,
        },
    }
    for key, value in daemon.items():
        good[key] = {**good[key], **value}
    return {"daemon": good}


@pytest.mark.parametrize(
    ("change", "target"),
    [
        ({"cold_start": {"hosts_ready_all_s": 1200.0}}, "11.1 all pairs served (s)"),
        ({"cold_start": {"hosts_ready_all_s": None}}, "11.1 all pairs served (s)"),
        ({"cold_start": {"registry_calls_per_pair_max": 4}}, "11.1 calls per pair, max"),
        ({"steady_state": {"peak_over_mean": 1.52}}, "11.2 peak / mean exchanges (1 min)"),
        (
            {"steady_state": {"peak_over_mean": 1.4, "random_floor_peak_over_mean": 1.2}},
            "11.2 peak / mean vs a flat random one",
        ),
        ({"outage": {"calls_in_outage_per_host_max": 195}}, "11.3 outage tries per host, max"),
        ({"outage": {"retry_gap_max_s": 120.0}}, "11.3 outage retry gaps (s)"),
        ({"outage": {"first_retry_gap_stdev_s": 0.0}}, "11.3 outage retry gaps (s)"),
        ({"outage": {"tokens_ran_out_in_outage": 3}}, "11.3 tokens run out in the outage"),
    ],
)
def test_each_target_fails_when_its_figure_is_off(change: dict[str, Any], target: str) -> None:
    assert all(row["met"] for row in report.targets(_figure()))
    bad = copy.deepcopy(_figure(**change))
    rows = {row["target"]: row["met"] for row in report.targets(bad)}
    assert rows.pop(target) is False
    assert all(rows.values())


def test_the_random_floor_is_the_median_busiest_window() -> None:
    # One window: the median of Poisson(52) is 52; more windows, a higher busiest one.
    assert scenarios.poisson_peak(52.0, 1) == 52
    assert 75 <= scenarios.poisson_peak(52.0, 4320) <= 85
    assert scenarios.poisson_peak(52.0, 100) < scenarios.poisson_peak(52.0, 4320)


def test_the_table_shows_both_modes() -> None:
    assert report.table("skipped") == "13 fleet: skipped"
    assert report.targets(None)[0]["met"] is None
