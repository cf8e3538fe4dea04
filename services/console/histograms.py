"""Durations kept as log-scale histograms, so that a median or a p99 over a million leads is a
sum of a few hundred counters, not a scan of raw history.

A duration (seconds, milliseconds: any positive unit) falls in bucket `floor(16 * log2(x))`;
durations below 1 unit share bucket 0, and read back as about 1 unit. Sixteen buckets per doubling keep every percentile read
back within 4.4% of the true value (a bucket's upper bound is 2^(1/16) = 1.044 times its lower
bound; `percentile` interpolates geometrically inside the bucket). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

PER_DOUBLING = 16
"""Buckets per doubling of the duration (resolution 2^(1/16), 4.4%)."""
MAX_BUCKET = 1023
"""Bucket of the longest duration told apart (2^64 units); longer ones are counted there."""


def bucket_of(duration: float) -> int:
    """The bucket of a duration in the histogram's unit (negative durations count as 0)."""
    if duration < 1:
        return 0
    return min(math.floor(math.log2(duration) * PER_DOUBLING), MAX_BUCKET)


def lower_bound(bucket: int) -> float:
    """The shortest duration in `bucket` (bucket 0 holds everything below 2^(1/16) too)."""
    return 0.0 if bucket <= 0 else float(2.0 ** (bucket / PER_DOUBLING))


def upper_bound(bucket: int) -> float:
    return float(2.0 ** ((bucket + 1) / PER_DOUBLING))


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The `q`-quantile (0 < q <= 1, e.g. 0.5, 0.9, 0.99) of the durations counted in
    `histogram` (bucket -> count), interpolated geometrically inside its bucket; None when the
    histogram counts nothing. The nearest-rank definition: the value below which `q` of the
    durations lie."""
    if not 0 < q <= 1:
        raise ValueError(f"a quantile is in (0, 1], not {q}")
    total = sum(count for count in histogram.values() if count > 0)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if count <= 0:
            continue
        if seen + count >= rank:
            # bucket 0 is read as [1, 2^(1/16)): a duration below one unit reads as about one
            low, high = max(lower_bound(bucket), 1.0), upper_bound(bucket)
            share = (rank - seen) / count
            return float(low * (high / low) ** share)
        seen += count
    return upper_bound(max(histogram))  # unreachable: the counts add up to `total`
