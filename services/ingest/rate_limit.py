"""Rate limits as token buckets, one per key (a write key's name, a client address). Pure:
time is an argument.

Each bucket holds up to `burst` tokens and refills at `rate` tokens per second; an event costs
one token, so a batch of 100 costs 100. A request that finds too few tokens takes none and
learns how long to wait (the client gets 429 with `Retry-After`).

Bounded: at most `max_buckets` buckets are kept, the least recently used dropped first (client
addresses are many and an attacker can make up more). A dropped bucket was idle the longest,
so it had refilled, or nearly: starting it again full costs little.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_BUCKETS = 100_000


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
        wait = self.wait(cost, now=now)
        if wait == 0.0:
            self.tokens -= min(float(cost), self.burst)
        return wait

    def reserve(self, cost: int, *, now: float) -> float:
        """Take `cost` tokens now, into debt if need be: the seconds until the debt is repaid
        (0.0 when there was no need). Meanwhile `take` refuses. For a sender that can wait
        (an import) rather than be refused."""
        self.wait(cost, now=now)
        self.tokens -= min(float(cost), self.burst)
        return max(0.0, -self.tokens / self.rate)

    def wait(self, cost: int, *, now: float) -> float:
        """What `take` would answer, taking nothing."""
        if self.updated_at is not None:
            elapsed = max(0.0, now - self.updated_at)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated_at = now
        needed = min(float(cost), self.burst)
        return 0.0 if self.tokens >= needed else (needed - self.tokens) / self.rate


class RateLimits:
    """A bucket per key, made on first use; at most `max_buckets` of them (see the module doc)."""

    def __init__(self, *, rate: float, burst: float, max_buckets: int = MAX_BUCKETS) -> None:
        TokenBucket(rate=rate, burst=burst)  # fail at start on bad settings, not per request
        self._rate = rate
        self._burst = burst
        self._max_buckets = max_buckets
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def retry_after(self, key: str, *, events: int, now: float) -> int | None:
        """None when `events` may pass now (and they are counted); else whole seconds to wait
        (at least 1, for a `Retry-After` header)."""
        return _seconds(self._bucket(key).take(events, now=now))

    def reserve(self, key: str, *, events: int, now: float) -> float:
        """`TokenBucket.reserve` of `key`'s bucket."""
        return self._bucket(key).reserve(events, now=now)

    def blocked(self, key: str, *, now: float) -> int | None:
        """Like `retry_after` for one event, counting nothing: whether `key` has run dry."""
        return _seconds(self._bucket(key).wait(1, now=now))

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate=self._rate, burst=self._burst)
            if len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


def _seconds(wait: float) -> int | None:
    return None if wait == 0.0 else max(1, math.ceil(wait))
