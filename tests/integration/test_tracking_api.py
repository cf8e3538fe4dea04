"""The full tracking API against the real broker: every call type, batches (all or nothing),
limits, gzip, write keys and the rate limit. The app runs under uvicorn on a free port, in the
test's event loop, so each test can choose its settings (e.g. a tiny rate limit)."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from datetime import timedelta
from typing import Any

import orjson
import pytest

from tests.fixtures.ingest import CAREERS_KEY, SECOND_WEBSITE_KEY, WEBSITE_KEY, Ingest, StartIngest

IDENTITY = {"anonymousId": "anon-1", "userId": "usr-1"}
CALLS: dict[str, dict[str, Any]] = {
    "identify": {**IDENTITY, "traits": {"email": "ada@initech.com"}},
    "track": {**IDENTITY, "event": "Demo Requested", "properties": {"plan": "pro"}},
    "page": {**IDENTITY, "name": "Pricing", "category": "Docs", "properties": {"path": "/p"}},
    "screen": {**IDENTITY, "name": "Home", "category": "App", "properties": {"dark": True}},
    "group": {**IDENTITY, "groupId": "acct-9", "traits": {"employees": 850}},
    "alias": {"previousId": "anon-1", "userId": "usr-1"},
}


# ---- each call type, alone and in a batch -----------------------------------------------------


async def test_every_call_type_lands_on_events_raw_with_its_fields(ingest: Ingest) -> None:
    for call_type, body in CALLS.items():
        response = await ingest.post(f"/v1/{call_type}", {**body, "messageId": f"m-{call_type}"})
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}

    events = {event.message_id: event for event in await ingest.events(len(CALLS))}

    assert {event.type for event in events.values()} == set(CALLS)
    assert {event.source for event in events.values()} == {"website"}
    assert events["m-identify"].traits == {"email": "ada@initech.com"}
    assert (events["m-track"].event, events["m-track"].properties) == (
        "Demo Requested",
        {"plan": "pro"},
    )
    assert (events["m-page"].name, events["m-page"].category) == ("Pricing", "Docs")
    assert events["m-screen"].properties == {"dark": True}
    assert (events["m-group"].group_id, events["m-group"].traits) == ("acct-9", {"employees": 850})
    assert (events["m-alias"].previous_id, events["m-alias"].user_id) == ("anon-1", "usr-1")


async def test_a_batch_applies_its_context_and_sent_at_to_each_call(ingest: Ingest) -> None:
    calls = [
        {"type": call_type, **body, "messageId": f"b-{call_type}", "context": {"ip": "1.2.3.4"}}
        for call_type, body in CALLS.items()
    ]
    calls[0]["timestamp"] = "2026-11-23T10:00:00Z"  # 5 s before the batch was sent
    batch = {
        "batch": calls,
        "context": {"library": {"name": "analytics-python"}, "ip": "9.9.9.9"},
        "integrations": {"Salesforce": False},
        "sentAt": "2026-11-23T10:00:05Z",
    }

    response = await ingest.post("/v1/batch", batch)

    assert response.json() == {"success": True}
    events = {event.message_id: event for event in await ingest.events(len(CALLS))}
    assert len(events) == len(CALLS)
    for event in events.values():
        assert event.context == {"library": {"name": "analytics-python"}, "ip": "1.2.3.4"}
        assert event.integrations == {"Salesforce": False}
    identify = events["b-identify"]
    assert identify.received_at - identify.timestamp == timedelta(seconds=5)


async def test_a_batch_with_invalid_calls_names_each_and_accepts_none(ingest: Ingest) -> None:
    batch = {
        "batch": [
            {"type": "track", **CALLS["track"]},
            {"type": "track", "event": "No Identity"},
            {"type": "alias", "userId": "usr-1"},
            {"type": "launch", **IDENTITY},
            "not a call",
            {"type": "identify", **CALLS["identify"]},
        ]
    }

    response = await ingest.post("/v1/batch", batch)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [error.split(":")[0] for error in errors] == [
        "batch[1]",
        "batch[2]",
        "batch[3]",
        "batch[4]",
    ]
    assert "userId or anonymousId is required" in errors[0]
    assert "previousId and userId are required" in errors[1]
    assert "type: must be one of" in errors[2]
    await ingest.no_events()


# ---- write keys --------------------------------------------------------------------------------


async def test_each_write_key_names_its_source_by_basic_auth_or_body(ingest: Ingest) -> None:
    by_basic = await ingest.post("/v1/track", {**CALLS["track"], "messageId": "a"}, key=CAREERS_KEY)
    in_body = await ingest.post(
        "/v1/batch",
        {"batch": [{"type": "track", **CALLS["track"], "messageId": "b"}], "writeKey": WEBSITE_KEY},
        key=None,
    )

    assert (by_basic.status_code, in_body.status_code) == (200, 200)
    sources = {event.message_id: event.source for event in await ingest.events(2)}
    assert sources == {"a": "careers-site", "b": "website"}


@pytest.mark.parametrize(
    ("key", "body_key"),
    [(None, None), ("wrong", None), (None, "wrong"), (None, 42)],
    ids=["none", "unknown-basic", "unknown-body", "body-not-text"],
)
async def test_a_missing_or_unknown_write_key_gets_401(
    ingest: Ingest, key: str | None, body_key: Any
) -> None:
    body = {**CALLS["track"], **({"writeKey": body_key} if body_key is not None else {})}

    response = await ingest.post("/v1/track", body, key=key)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


# ---- limits and encodings ----------------------------------------------------------------------


async def test_a_call_over_32_kb_is_refused(ingest: Ingest) -> None:
    big = {**CALLS["track"], "properties": {"blob": "x" * 33_000}}

    alone = await ingest.post("/v1/track", big)
    in_batch = await ingest.post("/v1/batch", {"batch": [{"type": "track", **big}]})

    assert alone.status_code == 400
    assert "larger than 32 KB" in alone.json()["errors"][0]
    assert in_batch.status_code == 400
    assert in_batch.json()["errors"][0].startswith("batch[0]: call is 32 KB, larger than 32 KB")


async def test_a_batch_over_500_kb_is_refused(ingest: Ingest) -> None:
    call = {"type": "track", **CALLS["track"], "properties": {"blob": "x" * 20_000}}

    response = await ingest.post("/v1/batch", {"batch": [call] * 26})

    assert response.status_code == 400
    assert "larger than 500 KB" in response.json()["errors"][0]
    await ingest.no_events()


async def test_a_gzip_body_is_accepted(ingest: Ingest) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", **CALLS["track"]}]}))

    response = await ingest.post("/v1/batch", body, **{"Content-Encoding": "gzip"})

    assert response.json() == {"success": True}
    assert (await ingest.events(1))[0].event == "Demo Requested"


@pytest.mark.parametrize(
    ("body", "encoding", "reason"),
    [
        (gzip.compress(b" " * 5_000_000), "gzip", "larger than 500 KB"),  # a zip bomb, 5 KB
        (b"\x1f\x8b not gzip", "gzip", "not valid gzip"),
        (gzip.compress(b'{"batch": []}')[:-12], "gzip", "not valid gzip"),
        (zlib.compress(b"{}"), "br", "not supported"),
    ],
    ids=["bomb", "garbage", "truncated", "unknown-encoding"],
)
async def test_bad_compressed_bodies_get_400(
    ingest: Ingest, body: bytes, encoding: str, reason: str
) -> None:
    response = await ingest.post("/v1/batch", body, **{"Content-Encoding": encoding})

    assert response.status_code == 400
    assert reason in response.json()["errors"][0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'{"userId": "\\ud800", "event": "X"}', "not valid JSON"),
        (b'{"userId": 1e999, "event": "X"}', "not valid JSON"),
        (b'{"userId": [1], "event": "X"}', "userId: Input should be"),
        (b'{"userId": "u", "event": 7}', "event: Input should be"),
        (b'{"userId": "u", "event": "X", "context": "web"}', "context: Input should be"),
        (b'{"userId": "u", "event": "X", "type": "page"}', "posted to /v1/track"),
    ],
    ids=["empty", "bad-utf8", "lone-surrogate", "infinite", "id-list", "event-int", "ctx", "type"],
)
async def test_malformed_bodies_get_400_never_500(ingest: Ingest, body: bytes, reason: str) -> None:
    response = await ingest.post("/v1/track", body)

    assert response.status_code == 400
    assert any(reason in error for error in response.json()["errors"]), response.json()


async def test_a_huge_integer_property_is_kept(ingest: Ingest) -> None:
    body = b'{"userId": "u", "event": "X", "properties": {"n": 18446744073709551615}}'

    assert (await ingest.post("/v1/track", body)).status_code == 200
    assert (await ingest.events(1))[0].properties == {"n": 18446744073709551615}


# ---- rate limit --------------------------------------------------------------------------------


async def test_a_write_key_over_its_rate_limit_gets_429_and_others_do_not(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(rate_limit_events_per_s=1, rate_limit_burst=5)
    five = {"batch": [{"type": "track", **CALLS["track"]}] * 5}

    first = await ingest.post("/v1/batch", five)
    second = await ingest.post("/v1/track", CALLS["track"])
    other_key = await ingest.post("/v1/track", CALLS["track"], key=CAREERS_KEY)
    same_source_other_key = await ingest.post("/v1/track", CALLS["track"], key=SECOND_WEBSITE_KEY)

    assert first.status_code == 200
    assert second.status_code == 429
    assert 1 <= int(second.headers["Retry-After"]) <= 5
    assert other_key.status_code == 200
    assert same_source_other_key.status_code == 200, "the limit is per key, not per source"
    await asyncio.sleep(int(second.headers["Retry-After"]))
    assert (await ingest.post("/v1/track", CALLS["track"])).status_code == 200
