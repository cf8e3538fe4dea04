"""What an answer means, how long to wait, how fast to send: sync's retry rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from services.sync.rate_limit import TokenBucket
from services.sync.retries import (
    EXCERPT_CHARS,
    Failure,
    backoff_s,
    excerpt,
    retry_after_s,
    verdict,
)

NOW = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status: int) -> None:
    assert verdict(status) == "delivered"


@pytest.mark.parametrize("status", [400, 413, 415, 422])
def test_content_the_destination_refused_is_dead_lettered_at_once(status: int) -> None:
    assert verdict(status) == "rejected"


@pytest.mark.parametrize(
    "status", [None, 500, 502, 503, 504, 401, 403, 404, 408, 409, 425, 429, 301, 410]
)
def test_everything_else_is_retried(status: int | None) -> None:
    assert verdict(status) == "retry"


def test_backoff_is_full_jitter_under_an_exponential_ceiling_and_the_cap() -> None:
    draw = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (10, 30.0), (500, 30.0)]:
        waits = [backoff_s(attempt, base_s=0.5, cap_s=30.0, draw=draw) for _ in range(400)]
        assert all(0.0 <= wait <= ceiling for wait in waits)
        # full jitter: spread over the whole range, not bunched at the ceiling
        assert min(waits) < ceiling * 0.1
        assert max(waits) > ceiling * 0.9


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s("120", now=NOW) == 120.0
    assert retry_after_s(" 5 ", now=NOW) == 5.0
    assert retry_after_s("Mon, 07 Dec 2026 10:01:30 GMT", now=NOW) == 90.0
    assert retry_after_s("Mon, 07 Dec 2026 09:00:00 GMT", now=NOW) == 0.0  # already past
    assert retry_after_s(None, now=NOW) is None
    assert retry_after_s("soon", now=NOW) is None
    assert retry_after_s("-3", now=NOW) is None


def test_an_answers_excerpt_is_bounded_printable_and_without_personal_data() -> None:
    body = b"error\r\n\x1b[31mfor ada@example.com\x00 " + b"x" * 5000
    kept = excerpt(body)
    assert len(kept) <= EXCERPT_CHARS
    assert "ada@" not in kept
    assert "***@example.com" in kept
    assert not any(ord(c) < 32 for c in kept)
    assert excerpt("\xff\xfe broken utf-8".encode("latin-1")).endswith("broken utf-8")


def test_the_token_bucket_spaces_requests_evenly() -> None:
    bucket = TokenBucket(4.0)  # one request every 0.25 s
    assert bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == pytest.approx(0.25)
    assert bucket.take(100.0) == pytest.approx(0.5)  # a third one waits behind the second
    assert bucket.take(101.0) == 0.0  # quiet for long enough: at once again, but no burst
    assert bucket.take(101.0) == pytest.approx(0.25)


def test_an_answers_excerpt_is_kept_only_on_the_dead_letter_of_the_event_it_answered() -> None:
    """An answer may quote what it was sent (a lead's name): logs, the destination's last error
    and a retried row get the status and size alone; a dead letter gets the excerpt, unless
    the request carried several leads' events."""
    failure = Failure(422, excerpt(b'{"error": "Ada Lovelace: bad owner"}'), body_bytes=36)

    assert failure.summary() == "HTTP 422 (36 bytes)"
    assert failure.dead_letter_text(events=1) == 'HTTP 422: {"error": "Ada Lovelace: bad owner"}'
    assert failure.dead_letter_text(events=3) == "HTTP 422 (36 bytes)"
    no_answer = Failure(None, "no answer within 10s")
    assert no_answer.summary() == no_answer.dead_letter_text(events=1) == "no answer within 10s"
