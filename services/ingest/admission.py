"""Who may send, and how much: authentication, scopes and rate limits of ingest's two edges
(tracking calls and lead-list imports). Time is an argument; no I/O.

In the order a request meets them:
1. **The key** (`auth.WriteKeys`), from the header first: a request with an `Authorization`
   header is authenticated before its body is read. Only a call that names its key in the body
   (`writeKey`, some Segment clients) is read first, within the endpoint's size limit.
2. **Failed authentications per client address** (`auth_failures_per_s`): a missing or unknown
   key gets 401 until its address has run its bucket dry, then 429; such an address's calls
   without a header get 429 before their body is read. Guessing keys, or making ingest read
   bodies for nothing, is slow; a valid key is never refused for its address's failures.
3. **The scope** the edge needs: 403 naming it.
4. **Events per client address** (for keys with `limit_per_address`), then **per key**: 429
   with `Retry-After`. Imports wait for the key's bucket instead of being refused (`pace`).

Every limit is per replica: N replicas admit N times the configured rates (docs/architecture.md,
"Limits").
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ingest.auth import Caller, WriteKeys, refusal_for_scope
from services.ingest.config import IngestSettings, WriteKeyScope
from services.ingest.rate_limit import RateLimits


@dataclass(frozen=True)
class Refusal:
    """Why a request is not admitted: its status, reason and, for 429, the seconds to wait."""

    status: int
    reason: str
    retry_after: int | None = None


UNKNOWN_KEY = Refusal(401, "missing or unknown write key")


class Admission:
    def __init__(self, settings: IngestSettings) -> None:
        self.keys = WriteKeys(settings.write_keys)
        self._failures = RateLimits(
            rate=settings.auth_failures_per_s, burst=settings.auth_failures_burst
        )
        self._per_address = RateLimits(
            rate=settings.rate_limit_per_address_events_per_s,
            burst=settings.rate_limit_per_address_burst,
        )
        self._per_key = RateLimits(
            rate=settings.rate_limit_events_per_s, burst=settings.rate_limit_burst
        )

    def before_reading(self, address: str, *, now: float) -> Refusal | None:
        """For a request whose key is in its body: 429 when its address's failed
        authentications ran dry (the body is not read), else None."""
        wait = self._failures.blocked(address, now=now)
        return None if wait is None else _too_many_failures(wait)

    def authenticate(
        self, key: str | None, *, scope: WriteKeyScope, address: str, now: float
    ) -> Caller | Refusal:
        """The caller of `key` if it holds `scope`; else 401, counted against the address (429
        once it ran dry), or 403."""
        caller = self.keys.find(key)
        if caller is None:
            wait = self._failures.retry_after(address, events=1, now=now)
            return UNKNOWN_KEY if wait is None else _too_many_failures(wait)
        if (reason := refusal_for_scope(caller, scope)) is not None:
            return Refusal(403, reason)
        return caller

    def admit(self, caller: Caller, *, address: str, events: int, now: float) -> Refusal | None:
        """None when `events` may pass now (they are counted); else 429 with the wait."""
        if caller.key.limit_per_address:
            wait = self._per_address.retry_after(address, events=events, now=now)
            if wait is not None:
                return Refusal(429, "rate limit of this client address exceeded", wait)
        wait = self._per_key.retry_after(caller.key_name, events=events, now=now)
        if wait is not None:
            return Refusal(
                429, f"rate limit of this write key (source {caller.source!r}) exceeded", wait
            )
        return None

    def pace(self, caller: Caller, *, events: int, now: float) -> float:
        """For an import: counts `events` against the key, and says how many seconds to wait
        before publishing them (0.0: at once)."""
        return self._per_key.reserve(caller.key_name, events=events, now=now)


def _too_many_failures(wait: int) -> Refusal:
    return Refusal(429, "too many requests with a missing or unknown write key", wait)
