"""What an attempt's answer means, and when to try again. Pure: time and randomness are
arguments.

- 2xx: delivered.
- 400, 413, 415, 422: the destination refused the content itself; sending it again cannot
  help, so the events go to the dead letters at once (`replay` sends them again once fixed).
- Anything else is retried: no answer (a timeout, a refused or reset connection), 5xx, and the
  4xx that say "not now" or "not yet" (401, 403, 404 while a CRM's credentials or endpoint are
  being fixed; 408, 409, 425, 429), other 4xx and 3xx (redirects are not followed) alike, until
  the destination's `max_attempts`; then the dead letters.
- The wait before the next attempt: exponential backoff with full jitter, a random time
  between 0 and `min(cap, base * 2^(attempt-1))` (retries of many lanes and replicas spread
  out instead of arriving together), unless the answer said `Retry-After` (seconds or an HTTP
  date), which is honoured, capped. A 429 or 503 with `Retry-After` also pauses the whole
  destination until then: every lane waits, not only the one that was told.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from shared.telemetry import redact_pii

Verdict = Literal["delivered", "retry", "rejected"]

REJECTED_STATUSES = frozenset({400, 413, 415, 422})
PAUSING_STATUSES = frozenset({429, 503})
EXCERPT_CHARS = 300
"""How much of a failed answer's body is kept (dead letters, the destination's last error)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def verdict(status: int | None) -> Verdict:
    """`status` None: no answer."""
    if status is not None and 200 <= status < 300:
        return "delivered"
    if status in REJECTED_STATUSES:
        return "rejected"
    return "retry"


def backoff_s(attempt: int, *, base_s: float, cap_s: float, draw: random.Random) -> float:
    """The wait after the `attempt`-th failure (1 for the first): full jitter (module doc)."""
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt - 1, 62))
    return draw.uniform(0.0, ceiling)


def retry_after_s(value: str | None, *, now: datetime) -> float | None:
    """`Retry-After` in seconds from `now`: a number of seconds or an HTTP date (RFC 9110); None
    when absent or unreadable, 0 for a date already past."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max((at - now).total_seconds(), 0.0)


@dataclass(frozen=True)
class Failure:
    """A failed attempt as it is kept and shown: the status (None: no answer), the body's size
    and a short, printable excerpt of it (or what went wrong without an answer).

    A destination's answer may quote what it was sent, a lead's personal data: the excerpt is
    kept only on the dead letter of the one event it answered (`dead_letter_text`, for the
    operator who replays it; an erasure deletes it with the lead), and everywhere else (logs,
    the destination's last error, a retried row) only `summary`, which quotes nothing."""

    status: int | None
    excerpt: str
    body_bytes: int = 0

    def summary(self) -> str:
        if self.status is None:
            return self.excerpt  # what went wrong: timeout, refused address, connection
        return f"HTTP {self.status} ({self.body_bytes} bytes)"

    def dead_letter_text(self, *, events: int) -> str:
        if self.status is None or events > 1 or not self.excerpt:
            return self.summary()
        return f"HTTP {self.status}: {self.excerpt}"


def excerpt(body: bytes) -> str:
    """The start of an answer's body, safe to store and show: text only (control characters
    and line breaks become spaces), emails and phone numbers redacted, at most `EXCERPT_CHARS`."""
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    text = _CONTROL.sub(" ", text).strip()
    text = redact_pii(text)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
