"""ratelimit: a token bucket per tenant, burst of one second of rate."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from image_service.ratelimit import RateLimiter, take


def test_a_full_second_of_burst_then_refusals_with_a_wait() -> None:
    limiter = RateLimiter()
    allowed = [limiter.check("t", 5, 100.0) is None for _ in range(7)]
    assert allowed == [True] * 5 + [False] * 2
    assert limiter.check("t", 5, 100.0) == 1  # whole seconds, never 0


def test_tokens_come_back_with_time_and_tenants_are_separate() -> None:
    limiter = RateLimiter()
    for _ in range(2):
        limiter.check("a", 2, 0.0)
    assert limiter.check("a", 2, 0.0) is not None
    assert limiter.check("b", 2, 0.0) is None  # another tenant has its own bucket
    assert limiter.check("a", 2, 0.5) is None  # half a second at 2/s is one token


@given(rate=st.floats(0.1, 1000), gaps=st.lists(st.floats(0, 2), min_size=1, max_size=50))
def test_never_more_than_burst_plus_rate_times_elapsed(rate: float, gaps: list[float]) -> None:
    bucket = None
    now = 0.0
    granted = 0
    for gap in gaps:
        now += gap
        ok, bucket, wait = take(bucket, now, rate)
        granted += ok
        assert wait >= 0
        assert ok or wait > 0
    assert granted <= max(1.0, rate) + rate * now + 1e-6
