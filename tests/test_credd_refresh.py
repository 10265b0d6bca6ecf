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


def test_retry_delay_backs_off_exponentially_with_full_jitter_and_a_cap() -> None:
    low = [refresh.retry_delay(n, 0.0) for n in range(1, 10)]
    high = [refresh.retry_delay(n, 1.0) for n in range(1, 10)]
    mid = [refresh.retry_delay(n, 0.5) for n in range(1, 10)]
    # Full jitter: anywhere from (almost) nothing up to the step, never a busy loop.
    assert low == [refresh.BACKOFF_FLOOR] * 9
    assert high[:4] == [1.0, 2.0, 4.0, 8.0]
    assert mid[1:5] == [1.0, 2.0, 4.0, 8.0]
    assert max(high) == refresh.BACKOFF_CAP
    assert all(lo <= hi for lo, hi in zip(low, high, strict=True))


def test_retry_delay_comes_well_before_the_token_runs_out() -> None:
    # 10 s of service left: retry within 5 s, whatever the backoff says.
    assert refresh.retry_delay(10, 1.0, time_left=10.0) == 5.0
    # Never a busy loop, even with no time left.
    assert refresh.retry_delay(1, 0.0, time_left=0.01) == refresh.BACKOFF_FLOOR
    assert refresh.retry_delay(3, 0.5, time_left=-5) == 2.0


def test_retry_delay_never_comes_before_retry_after() -> None:
    assert refresh.retry_delay(1, 0.0, retry_after=600.0) == 600.0
    # The jittered step comes on top, so those told the same moment spread out ...
    assert refresh.retry_delay(3, 1.0, retry_after=600.0) == 604.0
    # ... and menda-cloud's word beats the half-of-what-is-left rule.
    assert refresh.retry_delay(3, 0.5, time_left=10.0, retry_after=30.0) == 32.0


@given(
    failures=st.integers(1, 100),
    rand=st.floats(0, 1),
    left=st.none() | st.floats(-10, 1e5),
    after=st.none() | st.floats(0, 3600),
)
def test_retry_delay_is_bounded(
    failures: int, rand: float, left: float | None, after: float | None
) -> None:
    delay = refresh.retry_delay(failures, rand, time_left=left, retry_after=after)
    assert refresh.BACKOFF_FLOOR <= delay <= (after or 0.0) + refresh.BACKOFF_CAP
    if after:
        assert delay >= after


def test_keep_place_only_when_menda_cloud_said_when() -> None:
    assert refresh.keep_place_delay(None, 1, 0.5) is None
    assert refresh.keep_place_delay(120.0, 1, 0.0) == 120.0
    assert refresh.keep_place_delay(120.0, 4, 1.0) == 128.0


def test_first_refresh_is_spread_over_the_whole_refresh_cycle() -> None:
    assert refresh.first_share(0.0) == 0.0
    assert refresh.first_share(1.0) == pytest.approx(refresh.REFRESH_HIGH)
    # Flat up to 75 %: the mean cycle is 80 % of a lifetime, so rand 0.5 is 40 %.
    assert refresh.first_share(0.5) == pytest.approx(0.40)
    assert refresh.refresh_due(1000.0, 2000.0, 0.5, first=True) == pytest.approx(1400.0)
    shares = [refresh.first_share(i / 1000) for i in range(1000)]
    assert shares == sorted(shares)
    # What a daemon that has run for weeks looks like: the time to the next refresh at a
    # random moment is flat, with a third of them in the first 27 % of a lifetime.
    assert sum(1 for x in shares if x < 0.8 / 3) == pytest.approx(333, abs=2)


@given(rand=st.floats(0, 1), lifetime=st.floats(1, 12 * 3600))
def test_first_refresh_is_while_the_token_is_servable(rand: float, lifetime: float) -> None:
    due = refresh.refresh_due(0.0, lifetime, rand, first=True)
    assert 0.0 <= due <= refresh.REFRESH_HIGH * lifetime + 1e-6
    assert RegistryToken("t", lifetime, 0.0).servable(due)


def test_a_failing_host_is_probed_by_one_refresh_at_a_time() -> None:
    backoff: refresh.UpstreamBackoff[str] = refresh.UpstreamBackoff()
    assert backoff.wait("h", 0.0) == 0.0  # healthy: everyone goes
    assert backoff.wait("h", 0.0) == 0.0
    next_try = backoff.failed("h", 10.0, 1.0)
    assert next_try == 11.0  # first step: up to 1 s
    assert backoff.wait("h", 10.5) == pytest.approx(0.5)
    assert backoff.wait("h", 11.0) == 0.0  # this one probes ...
    assert backoff.wait("h", 11.0) == refresh.PROBE_POLL  # ... the others wait for it
    assert backoff.wait("other", 11.0) == 0.0  # another host is not concerned
    assert backoff.failed("h", 12.0, 1.0) == 14.0  # second step: up to 2 s
    assert backoff.failures("h") == 2
    backoff.succeeded("h")
    assert backoff.wait("h", 12.5) == 0.0
    assert backoff.wait("h", 12.5) == 0.0
    assert backoff.failures("h") == 0


def test_upstream_backoff_honours_retry_after() -> None:
    backoff: refresh.UpstreamBackoff[str] = refresh.UpstreamBackoff()
    assert backoff.failed("h", 0.0, 0.0, retry_after=300.0) == 300.0


def test_one_timer_wakes_at_refresh_or_idle_whichever_first() -> None:
    assert refresh.next_wakeup(100.0, 0.0, 50.0) == 50.0
    assert refresh.next_wakeup(30.0, 0.0, 50.0) == 30.0
    assert refresh.next_wakeup(None, 10.0, 50.0) == 60.0


def test_is_idle() -> None:
    assert not refresh.is_idle(59.9, 10.0, 50.0)
    assert refresh.is_idle(60.0, 10.0, 50.0)
