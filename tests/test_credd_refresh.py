"""Pure timing rules of the daemon: when to refresh, when to retry, when to wake, when idle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from menda_credd import refresh
from menda_keyring.tokens import RegistryToken


def test_refresh_due_spans_75_to_85_percent_of_the_lifetime() -> None:
    assert refresh.refresh_due(1000.0, 2000.0, 0.0) == pytest.approx(1750.0)
    assert refresh.refresh_due(1000.0, 2000.0, 0.5) == pytest.approx(1800.0)
    assert refresh.refresh_due(1000.0, 2000.0, 0.999999) == pytest.approx(1850.0, abs=1e-3)


@given(
    issued=st.floats(0, 2e9),
    lifetime=st.floats(1, 12 * 3600),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_refresh_due_is_always_while_the_token_is_still_servable(
    issued: float, lifetime: float, rand: float
) -> None:
    due = refresh.refresh_due(issued, issued + lifetime, rand)
    assert issued + 0.75 * lifetime - 1e-6 <= due <= issued + 0.85 * lifetime + 1e-6
    token = RegistryToken("t", issued + lifetime, issued)
    # Refreshing at the due time leaves the old token servable: no request has to wait.
    assert token.servable(due)


def test_refresh_due_of_a_degenerate_token_is_its_issue_time() -> None:
    assert refresh.refresh_due(50.0, 40.0, 0.3) == 50.0


def test_retry_delay_backs_off_exponentially_with_jitter_and_a_cap() -> None:
    low = [refresh.retry_delay(n, 0.0) for n in range(1, 10)]
    high = [refresh.retry_delay(n, 1.0) for n in range(1, 10)]
    assert low[:4] == [0.5, 1.0, 2.0, 4.0]
    assert high[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(high) == refresh.BACKOFF_CAP
    assert all(lo <= hi for lo, hi in zip(low, high, strict=True))


def test_retry_delay_comes_well_before_the_token_runs_out() -> None:
    # 10 s of service left: retry within 5 s, whatever the backoff says.
    assert refresh.retry_delay(10, 1.0, time_left=10.0) == 5.0
    # Never a busy loop, even with no time left.
    assert refresh.retry_delay(1, 0.0, time_left=0.01) == refresh.BACKOFF_FLOOR
    assert refresh.retry_delay(3, 0.0, time_left=-5) == 2.0


@given(failures=st.integers(1, 100), rand=st.floats(0, 1), left=st.none() | st.floats(-10, 1e5))
def test_retry_delay_is_bounded(failures: int, rand: float, left: float | None) -> None:
    delay = refresh.retry_delay(failures, rand, time_left=left)
    assert refresh.BACKOFF_FLOOR <= delay <= refresh.BACKOFF_CAP


def test_one_timer_wakes_at_refresh_or_idle_whichever_first() -> None:
    assert refresh.next_wakeup(100.0, 0.0, 50.0) == 50.0
    assert refresh.next_wakeup(30.0, 0.0, 50.0) == 30.0
    assert refresh.next_wakeup(None, 10.0, 50.0) == 60.0


def test_is_idle() -> None:
    assert not refresh.is_idle(59.9, 10.0, 50.0)
    assert refresh.is_idle(60.0, 10.0, 50.0)
