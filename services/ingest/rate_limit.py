"""A per-write-key rate limit on events (a token bucket). Pure: time is an argument.

Each key's bucket holds up to `burst` tokens and refills at `rate` tokens per second; an event
costs one token, so a batch of 100 costs 100. A request that finds too few tokens takes none
and learns how long to wait (the client gets 429 with `Retry-After`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """One key's bucket. `take` is not thread-safe; ingest calls it from its event loop only."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    updated_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.tokens = self.burst

    def take(self, cost: int, *, now: float) -> float:
        """Take `cost` tokens at monotonic time `now`: 0.0 when granted, else the seconds to
        wait until they would be. A cost above `burst` is charged as `burst`, so one large
        (still size-limited) batch is never refused forever."""
        if self.updated_at is not None:
            elapsed = max(0.0, now - self.updated_at)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated_at = now
        needed = min(float(cost), self.burst)
        if self.tokens >= needed:
            self.tokens -= needed
            return 0.0
        return (needed - self.tokens) / self.rate


class RateLimits:
    """A bucket per write key, made on first use."""

    def __init__(self, *, rate: float, burst: float) -> None:
        TokenBucket(rate=rate, burst=burst)  # fail at start on bad settings, not per request
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str, *, events: int, now: float) -> int | None:
        """None when `events` may pass now; else whole seconds to wait (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self._rate, burst=self._burst)
        wait = bucket.take(events, now=now)
        return None if wait == 0.0 else max(1, math.ceil(wait))
