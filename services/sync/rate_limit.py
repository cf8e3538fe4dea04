"""A destination's request rate (`rate_limit_per_s`): a token bucket shared by its lanes.

Exact across replicas without a shared store: only the process that holds the destination's
lease sends to it (`delivery`). The bucket holds one token, so requests are spaced evenly
(`1 / rate` apart) instead of bursting after a quiet spell. Pure: time is an argument.
"""

from __future__ import annotations


class TokenBucket:
    def __init__(self, rate_per_s: float, *, burst: float = 1.0) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> float:
        """Take a token at `now` (monotonic seconds); returns how long to wait before sending
        (0: at once). The token is taken either way: a caller that waits then sends."""
        if self._at is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate
