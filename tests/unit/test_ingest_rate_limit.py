"""The per-write-key token bucket: refills with time, charges events, says how long to wait."""

from __future__ import annotations

import pytest

from services.ingest.rate_limit import RateLimits, TokenBucket

pytestmark = pytest.mark.unit


def test_a_full_bucket_grants_its_burst_then_asks_to_wait() -> None:
    bucket = TokenBucket(rate=10, burst=20)

    assert bucket.take(20, now=0.0) == 0.0
    assert bucket.take(5, now=0.0) == pytest.approx(0.5)


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=20)
    bucket.take(20, now=0.0)

    assert bucket.take(10, now=1.0) == 0.0  # 10 refilled
    assert bucket.take(1, now=1.0) == pytest.approx(0.1)
    assert bucket.take(20, now=100.0) == 0.0  # capped at the burst, not 990
    assert bucket.take(1, now=100.0) > 0


def test_a_refused_request_takes_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=10)
    bucket.take(8, now=0.0)

    assert bucket.take(5, now=0.0) == pytest.approx(3.0)
    assert bucket.take(2, now=0.0) == 0.0


def test_a_cost_above_the_burst_is_charged_as_the_burst() -> None:
    bucket = TokenBucket(rate=1, burst=10)

    assert bucket.take(500, now=0.0) == 0.0
    assert bucket.take(500, now=5.0) == pytest.approx(5.0)


def test_time_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(rate=1, burst=10)
    bucket.take(10, now=100.0)

    assert bucket.take(1, now=50.0) == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 10), (-1, 10), (1, 0)])
def test_bad_settings_fail_at_once(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimits(rate=rate, burst=burst)


def test_each_key_has_its_own_bucket_and_waits_are_whole_seconds() -> None:
    limits = RateLimits(rate=2, burst=4)

    assert limits.retry_after("website", events=4, now=0.0) is None
    assert limits.retry_after("website", events=1, now=0.0) == 1  # 0.5 s, rounded up
    assert limits.retry_after("careers", events=4, now=0.0) is None
    assert limits.retry_after("website", events=4, now=0.2) == 2  # 1.8 s, rounded up
