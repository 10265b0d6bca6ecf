"""Figure 12, the simulated working week, quickly: its targets are met by the code as it is,
and they can fail (a daemon without pre-warm, a login that cannot last the night)."""

from __future__ import annotations

import datetime
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import workweek
from benchmarks.report import working_week_targets

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parent.parent


def week(*args: str) -> dict[str, Any]:
    """``python -m benchmarks.workweek`` (its own process: it quietens menda_credd's log)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.workweek", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def met(result: dict[str, Any]) -> dict[str, bool | None]:
    return {row["target"]: row["met"] for row in working_week_targets(result)}


def test_the_developer_works_nine_to_six_on_weekdays_with_a_lunch_gap() -> None:
    days = workweek.schedule(random.Random(3))
    assert len(days) == 2 * 5
    for day in days:
        start = datetime.datetime.fromtimestamp(day.asks[0])
        assert start.weekday() < 5 and (8, 55) <= (start.hour, start.minute) <= (9, 10)
        assert day.signs_on < day.asks[0] and day.asks[-1] < day.signs_off
        assert list(day.asks) == sorted(day.asks)
        assert day.asks[3] - day.asks[0] < 5  # the morning burst
        gaps = [b - a for a, b in itertools.pairwise(day.asks[3:])]
        assert all(g >= 20 * 60 for g in gaps) and max(gaps) >= 45 * 60  # lunch
        assert datetime.datetime.fromtimestamp(day.asks[-1]).hour < 18


def test_the_working_week_meets_its_targets_and_the_daemon_saves_calls() -> None:
    result = week()
    rows = met(result)
    assert rows["12 daemon all week: first asks waited"] is True
    assert all(value is not False for value in rows.values()), rows
    running, in_process = result["daemon"]["week"], result["in_process"]["week"]
    # Every ask in process is one exchange; the daemon makes a few a day: the pre-warm, the
    # early first refresh that spreads a fleet's refreshes (refresh.first_share), and one
    # more inside the idle timeout.
    assert in_process["registry_exchanges"] == in_process["asks"] > 50
    assert 0 < running["registry_exchanges"] <= 3 * running["working_days"]
    # Pre-warm learnt the week from nothing: the very first morning waited.
    assert result["daemon"]["learning_week"]["first_asks_that_waited"] >= 1
    per_login = result["daemon_per_login"]["week"]
    assert per_login["daemon_starts"] == 5 and per_login["starts_never_warm"] == 0
    assert 0 < per_login["start_to_warm_s_max"] < 60


def test_without_prewarm_the_first_asks_of_the_day_wait() -> None:
    result = week("--no-prewarm")
    assert result["daemon"]["week"]["first_asks_that_waited"] == 5
    assert met(result)["12 daemon all week: first asks waited"] is False


def test_a_login_that_cannot_last_the_night_fails_the_sign_in_targets() -> None:
    result = week("--refresh-lifetime", str(12 * 3600))
    rows = met(result)
    for mode in ("daemon all week", "daemon per login", "in process"):
        assert rows[f"12 {mode}: NoCachedLoginError"] is False, mode
