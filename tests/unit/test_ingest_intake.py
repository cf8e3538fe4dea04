"""From request bytes to `events.raw` values: limits, gzip, JSON, every call type and the
batch rules (batch-wide fields, all or nothing, reasons by index)."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.intake import (
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    MAX_REASONS,
    Refused,
    decompressed,
    events_from,
    json_object,
    limit_for,
)
from shared.codec import decode
from shared.contracts import RawEvent
from tests.unit.builders import NOW

pytestmark = pytest.mark.unit

IDS = {"anonymousId": "anon-1", "userId": "usr-1"}


def accept(body: dict[str, Any], endpoint: str = "batch") -> list[RawEvent]:
    """The accepted events as the topic's consumers will read them (decoded from the wire)."""
    records = events_from(body, endpoint=endpoint, source="website", received_at=NOW)
    events = [decode(record.value, RawEvent) for record in records]
    assert [record.key for record in records] == [e.partition_key.encode() for e in events]
    return events


def refusal(body: dict[str, Any], endpoint: str = "batch") -> list[str]:
    with pytest.raises(Refused) as refused:
        accept(body, endpoint)
    return refused.value.reasons


# ---- bytes -------------------------------------------------------------------------------------


def test_limits_are_segments() -> None:
    assert (limit_for("batch"), limit_for("track"), limit_for("alias")) == (
        500 * 1024,
        32 * 1024,
        32 * 1024,
    )


@pytest.mark.parametrize("encoding", [None, "identity", " Identity "])
def test_a_plain_body_is_kept(encoding: str | None) -> None:
    assert decompressed(b"{}", content_encoding=encoding, limit=10) == b"{}"


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (gzip.compress(b'{"a": 1}'), "gzip"),
        (gzip.compress(b'{"a": 1}'), "x-gzip"),
        (zlib.compress(b'{"a": 1}'), "deflate"),
        (gzip.compress(b'{"a": 1}'), "GZIP"),
    ],
)
def test_compressed_bodies_are_inflated(body: bytes, encoding: str) -> None:
    assert decompressed(body, content_encoding=encoding, limit=100) == b'{"a": 1}'


@pytest.mark.parametrize(
    ("body", "encoding", "limit", "reason"),
    [
        (b"x" * 11, None, 10, "larger than"),
        (gzip.compress(b"x" * 11), "gzip", 10, "larger than"),
        (gzip.compress(b"\0" * 50_000_000), "gzip", MAX_BATCH_BYTES, "larger than 500 KB"),
        (gzip.compress(b"{}")[:-4], "gzip", 10, "truncated"),
        (b"not gzip at all", "gzip", 10, "not valid gzip"),
        (b"{}", "br", 10, "not supported"),
    ],
    ids=["plain-too-big", "inflates-too-big", "bomb", "truncated", "garbage", "brotli"],
)
def test_bodies_that_are_refused(
    body: bytes, encoding: str | None, limit: int, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        decompressed(body, content_encoding=encoding, limit=limit)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'"text"', "must be a JSON object"),
        (b"[{}]", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"a": "\\udc00"}', "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"\xc3\x28", "not valid JSON"),
    ],
)
def test_json_object_refuses_what_is_not_an_object(body: bytes, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        json_object(body)


# ---- single calls ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        ("identify", {**IDS, "traits": {"plan": "pro"}}, {"traits": {"plan": "pro"}}),
        ("track", {**IDS, "event": "Signed Up"}, {"event": "Signed Up"}),
        (
            "page",
            {**IDS, "name": "Pricing", "category": "Docs", "properties": {"path": "/p"}},
            {"name": "Pricing", "category": "Docs", "properties": {"path": "/p"}},
        ),
        ("screen", {**IDS, "name": "Home"}, {"name": "Home", "category": None}),
        (
            "group",
            {**IDS, "groupId": 42, "traits": {"employees": 9}},
            {"group_id": "42", "traits": {"employees": 9}},
        ),
        ("alias", {"previousId": "anon-1", "userId": "usr-1"}, {"previous_id": "anon-1"}),
    ],
)
def test_each_call_type_becomes_an_event_of_that_type(
    endpoint: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    [event] = accept(body, endpoint)

    assert event.type == endpoint
    assert event.source == "website"
    assert {field: getattr(event, field) for field in expected} == expected


@pytest.mark.parametrize(
    ("endpoint", "body", "reason"),
    [
        ("alias", {"userId": "usr-1"}, "previousId and userId are required"),
        ("alias", {"previousId": "anon-1", "anonymousId": "a"}, "previousId and userId"),
        ("group", {**IDS}, "groupId: Field required"),
        ("group", {**IDS, "groupId": " "}, "groupId"),
        ("page", {"name": "Pricing"}, "userId or anonymousId is required"),
        ("screen", {**IDS, "properties": []}, "properties: Input should be a valid dictionary"),
        ("track", {**IDS, "event": "X", "type": "identify"}, "'identify' posted to /v1/track"),
        ("identify", {**IDS, "traits": "vip"}, "traits: Input should be a valid dictionary"),
        (
            "page",
            {**IDS, "timestamp": "0123-01-01T00:00:00Z", "sentAt": "2149-01-01T00:00:00Z"},
            "timestamp: too far from sentAt",
        ),
    ],
)
def test_invalid_single_calls_are_refused_with_the_reason(
    endpoint: str, body: dict[str, Any], reason: str
) -> None:
    assert any(reason in line for line in refusal(body, endpoint)), refusal(body, endpoint)


# ---- batches -----------------------------------------------------------------------------------


def test_a_batch_keeps_order_and_types() -> None:
    calls = [
        {"type": "page", **IDS, "messageId": "1"},
        {"type": "track", **IDS, "event": "X", "messageId": "2"},
        {"type": "alias", "previousId": "a", "userId": "u", "messageId": "3"},
    ]

    events = accept({"batch": calls})

    assert [(e.type, e.message_id) for e in events] == [
        ("page", "1"),
        ("track", "2"),
        ("alias", "3"),
    ]


def test_batch_wide_fields_apply_and_a_calls_own_values_win() -> None:
    body = {
        "batch": [
            {"type": "track", **IDS, "event": "A", "context": {"ip": "1.1.1.1"}},
            {
                "type": "track",
                **IDS,
                "event": "B",
                "sentAt": "2026-03-02T09:15:30Z",
                "integrations": {"All": True},
            },
        ],
        "context": {"ip": "9.9.9.9", "locale": "de-DE"},
        "integrations": {"Salesforce": False},
        "sentAt": "2026-03-02T09:15:40Z",
    }

    first, second = accept(body)

    assert first.context == {"ip": "1.1.1.1", "locale": "de-DE"}
    assert second.context == {"ip": "9.9.9.9", "locale": "de-DE"}
    assert first.integrations == {"Salesforce": False}
    assert second.integrations == {"Salesforce": False, "All": True}
    assert (first.sent_at, second.sent_at) == (
        datetime(2026, 3, 2, 9, 15, 40, tzinfo=UTC),
        datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC),
    )


def test_a_batch_is_refused_whole_with_a_reason_per_invalid_call() -> None:
    body = {
        "batch": [
            {"type": "track", **IDS, "event": "Fine"},
            {"type": "track", **IDS},
            7,
            {"type": "launch", **IDS},
            {**IDS, "event": "X"},
            {"type": "track", **IDS, "event": "X", "properties": {"b": "x" * MAX_CALL_BYTES}},
        ]
    }

    reasons = refusal(body)

    assert reasons == [
        "batch[1]: event: Field required",
        "batch[2]: must be a JSON object",
        "batch[3]: type: must be one of identify, track, page, screen, group, alias, got 'launch'",
        "batch[4]: type: must be one of identify, track, page, screen, group, alias, got None",
        "batch[5]: call is 32 KB, larger than 32 KB",
    ]


def test_a_batch_with_many_invalid_calls_gets_a_bounded_answer() -> None:
    reasons = refusal({"batch": [{"type": "track"}] * 400})

    assert len(reasons) == MAX_REASONS + 1
    assert reasons[-1].startswith("... and ")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({}, "batch: must be a list of calls"),
        ({"batch": {"type": "track"}}, "batch: must be a list of calls"),
        ({"batch": []}, "batch: must hold at least one call"),
        ({"batch": [{"type": "track", **IDS, "event": "X"}], "context": []}, "context: must be"),
        ({"batch": [{"type": "track", **IDS, "event": "X"}], "integrations": 1}, "integrations"),
        ({"batch": [{"type": "track", **IDS, "event": "X"}], "sentAt": "soon"}, "batch[0]: sentAt"),
    ],
)
def test_malformed_batches_are_refused(body: dict[str, Any], reason: str) -> None:
    assert any(reason in line for line in refusal(body)), refusal(body)


def test_events_encode_to_their_contract() -> None:
    [record] = events_from(
        {"batch": [{"type": "group", **IDS, "groupId": "g", "messageId": "m"}]},
        endpoint="batch",
        source="website",
        received_at=NOW,
    )

    wire = orjson.loads(record.value)

    assert record.key == b"anon-1"
    assert wire["groupId"] == "g"
    assert wire["type"] == "group"
    assert wire["receivedAt"].startswith("2026-")
    # Byte for byte what the contract model itself writes.
    assert record.value == decode(record.value, RawEvent).model_dump_json(by_alias=True).encode()
