"""Durations as log-scale histograms (`services.console.histograms`): sixteen buckets per
doubling, so a percentile read back from a few hundred counters is within 4.4% of the true
(nearest-rank) value; an empty histogram has no percentile, and a quantile is in (0, 1]."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.console.histograms import (
    MAX_BUCKET,
    PER_DOUBLING,
    bucket_of,
    lower_bound,
    percentile,
    upper_bound,
)

SETTINGS = settings(max_examples=300, deadline=None)
TOLERANCE = 0.045
"""The documented resolution: a bucket's upper bound is 2^(1/16) = 1.0443 times its lower one."""
ULP = 1e-12
"""log2 rounds: a value on a bucket's boundary may land on either side of it by an ulp."""
LONGEST = 2.0**64
"""The longest duration the histogram tells apart (bucket MAX_BUCKET ends there)."""

# Durations of a unit or more past bucket 0 (which also holds everything below one unit).
timed = st.floats(min_value=2 ** (1 / PER_DOUBLING) * 1.001, max_value=2.0**62)
any_duration = st.floats(min_value=-1e6, max_value=LONGEST, exclude_max=True)
quantiles = st.floats(min_value=0, max_value=1, exclude_min=True)


def histogram_of(values: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return counts


def nearest_rank(values: list[float], q: float) -> float:
    """The exact q-quantile: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def close(estimate: float | None, exact: float) -> bool:
    return estimate is not None and abs(estimate - exact) <= TOLERANCE * exact


# --- buckets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "bucket"),
    [
        (-5.0, 0),  # a negative duration counts as 0
        (0.0, 0),
        (0.999, 0),  # below one unit: bucket 0
        (1.0, 0),  # log2(1) = 0
        (1.04, 0),  # still below 2^(1/16)
        (1.05, 1),
        (2.0, 16),  # one doubling is sixteen buckets
        (3.0, 25),  # 16 * log2(3) = 25.36
        (4.0, 32),
        (1000.0, 159),  # 16 * log2(1000) = 159.45
        (1024.0, 160),
        (2.0**63, 1008),
        (LONGEST, MAX_BUCKET),  # the longest duration told apart
        (2.0**80, MAX_BUCKET),  # longer ones are counted there too
        (1e300, MAX_BUCKET),
    ],
)
def test_a_duration_falls_in_bucket_floor_of_16_log2(duration: float, bucket: int) -> None:
    assert bucket_of(duration) == bucket


@SETTINGS
@given(a=any_duration, b=any_duration)
def test_buckets_are_monotonic(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert bucket_of(low) <= bucket_of(high)


@SETTINGS
@given(duration=any_duration)
def test_a_duration_lies_within_its_buckets_bounds(duration: float) -> None:
    bucket = bucket_of(duration)
    value = max(duration, 0.0)  # a negative duration counts as 0
    assert lower_bound(bucket) * (1 - ULP) <= value < upper_bound(bucket) * (1 + ULP)


@pytest.mark.parametrize("bucket", [0, 1, 15, 16, 17, 159, 500, MAX_BUCKET - 1])
def test_buckets_tile_the_durations_without_gaps(bucket: int) -> None:
    assert upper_bound(bucket) == lower_bound(bucket + 1)
    assert lower_bound(bucket) < upper_bound(bucket)


@pytest.mark.parametrize("bucket", [1, 2, 16, 100, 700, MAX_BUCKET])
def test_a_bucket_spans_a_sixteenth_of_a_doubling(bucket: int) -> None:
    assert upper_bound(bucket) / lower_bound(bucket) == pytest.approx(2 ** (1 / 16))


def test_bucket_0_starts_at_0_and_the_last_bucket_ends_at_the_longest_duration() -> None:
    assert lower_bound(0) == 0.0
    assert upper_bound(0) == pytest.approx(2 ** (1 / 16))
    assert upper_bound(MAX_BUCKET) == LONGEST


# --- percentiles ---------------------------------------------------------------------------

UNIFORM = [float(ms) for ms in range(1, 10_001)]
"""1..10000 ms, one lead each."""
UNIFORM_HISTOGRAM = histogram_of(UNIFORM)


@pytest.mark.parametrize(
    ("q", "exact"),
    [
        (0.5, 5000.0),  # the median
        (0.9, 9000.0),
        (0.99, 9900.0),
        (0.999, 9990.0),
        (1.0, 10_000.0),  # the longest
        (0.0001, 1.0),  # the shortest (bucket 0, read at its upper bound)
        (0.25, 2500.0),
        (0.123_45, 1235.0),  # a rank between two values: the next one up
    ],
)
def test_percentiles_of_1_to_10000_ms_are_within_4_5_percent(q: float, exact: float) -> None:
    assert nearest_rank(UNIFORM, q) == exact  # the test's own reference
    assert close(percentile(UNIFORM_HISTOGRAM, q), exact)


@SETTINGS
@given(q=st.floats(min_value=0.0001, max_value=1))
def test_any_percentile_of_1_to_10000_ms_is_within_4_5_percent(q: float) -> None:
    assert close(percentile(UNIFORM_HISTOGRAM, q), UNIFORM[math.ceil(q * len(UNIFORM)) - 1])


@SETTINGS
@given(value=timed, q=quantiles, times=st.integers(min_value=1, max_value=1000))
def test_every_percentile_of_a_single_value_is_that_value_within_4_5_percent(
    value: float, q: float, times: int
) -> None:
    assert close(percentile({bucket_of(value): times}, q), value)


@SETTINGS
@given(values=st.lists(timed, min_size=1, max_size=200), q=quantiles)
def test_a_percentile_of_any_durations_is_within_4_5_percent_of_the_nearest_rank_value(
    values: list[float], q: float
) -> None:
    assert close(percentile(histogram_of(values), q), nearest_rank(values, q))


@SETTINGS
@given(values=st.lists(any_duration, min_size=1, max_size=100), q=quantiles, r=quantiles)
def test_a_higher_quantile_is_never_a_shorter_duration(
    values: list[float], q: float, r: float
) -> None:
    histogram = histogram_of(values)
    low, high = sorted((q, r))
    assert percentile(histogram, low) <= percentile(histogram, high)  # type: ignore[operator]


@pytest.mark.parametrize("value", [1.0, 1.02])
def test_a_duration_of_one_unit_reads_back_within_4_5_percent(value: float) -> None:
    assert close(percentile({bucket_of(value): 1}, 0.5), value)


@pytest.mark.parametrize(
    "histogram",
    [
        {},  # nothing counted
        {12: 0},  # a counter back at zero (a lead moved away)
        {3: 0, 40: 0},
        {5: -1},  # a negative count (in a difference) is not a duration
    ],
)
def test_an_empty_histogram_has_no_percentile(histogram: dict[int, int]) -> None:
    assert percentile(histogram, 0.5) is None


@pytest.mark.parametrize(
    ("histogram", "q", "expected"),
    [
        ({16: 1, 200: 0, 300: -2}, 1.0, upper_bound(16)),  # counters above: not read
        ({5: -2, 16: 1}, 0.5, 2 * 2 ** (0.5 / 16)),  # a negative counter below: not read
        ({5: 0, 16: 1}, 0.5, 2 * 2 ** (0.5 / 16)),
    ],
)
def test_counters_at_zero_or_below_are_not_durations(
    histogram: dict[int, int], q: float, expected: float
) -> None:
    assert percentile(histogram, q) == pytest.approx(expected)


@pytest.mark.parametrize(
    "q",
    [
        0.0,  # the 0-quantile is not defined by nearest rank
        -0.5,
        1.000_001,
        2.0,
        50.0,  # a percent, not a quantile
        math.nan,
    ],
)
def test_a_quantile_out_of_0_to_1_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="a quantile is in"):
        percentile({16: 1}, q)


def test_a_quantile_out_of_range_is_refused_even_for_an_empty_histogram() -> None:
    with pytest.raises(ValueError, match="a quantile is in"):
        percentile({}, 0)
