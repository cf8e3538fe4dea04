"""ingest's HTTP contract as a tracking client meets it: auth, validation, what lands on Kafka."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import httpx
import pytest

from shared.codec import decode
from shared.contracts import RawEvent
from shared.topics import EVENTS_RAW
from tests.fixtures.pipeline import WRITE_KEY, Pipeline


@pytest.fixture
async def ingest(pipeline: Pipeline) -> Pipeline:
    await pipeline.start("ingest")
    return pipeline


@pytest.mark.parametrize("write_key", [None, "wrong-key"])
async def test_a_missing_or_unknown_write_key_is_refused(
    ingest: Pipeline, write_key: str | None
) -> None:
    response = await ingest.post("/v1/track", {"userId": "u1", "event": "X"}, write_key=write_key)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "missing or unknown write key"}
    assert response.headers["WWW-Authenticate"].startswith("Basic")


async def test_a_write_key_in_the_body_is_accepted(ingest: Pipeline) -> None:
    response = await ingest.post(
        "/v1/track", {"userId": "u1", "event": "X", "writeKey": WRITE_KEY}, write_key=None
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b'{"event": "Demo Requested"}', "userId or anonymousId is required"),
        (b'{"userId": "u1"}', "event: Field required"),
        (b'{"userId": "u1", "event": "X", "timestamp": "soon"}', "timestamp: Input should be"),
        (b'{"userId": "u1", "event": "X", "properties": [1]}', "properties: Input should be"),
    ],
)
async def test_invalid_calls_get_400_with_the_reason(
    ingest: Pipeline, body: bytes, reason: str
) -> None:
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    async with httpx.AsyncClient(base_url=ingest.ingest_url) as client:
        response = await client.post(
            "/v1/track",
            content=body,
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert any(reason in error for error in response.json()["errors"]), response.json()


async def test_an_accepted_call_is_on_events_raw_stamped_by_ingest(ingest: Pipeline) -> None:
    response = await ingest.post(
        "/v1/track",
        {
            "anonymousId": "anon-42",
            "event": "Pricing Viewed",
            "messageId": "client-msg-1",
            "timestamp": "2026-11-23T10:00:00Z",
            "sentAt": "2026-11-23T10:00:05Z",  # the client's clock: 5 s after the event
            "properties": {"path": "/pricing"},
        },
    )
    assert response.json() == {"success": True}
    records = await ingest.read(
        EVENTS_RAW.full_name(ingest.prefix), until=lambda records: len(records) >= 1
    )
    assert records[0].key == b"anon-42"
    event = decode(records[0].value, RawEvent)
    assert event.message_id == "client-msg-1"
    assert event.source == "test-site"
    assert event.properties == {"path": "/pricing"}
    # Clock-skew correction: the event happened 5 s before ingest received it.
    assert event.received_at - event.timestamp == timedelta(seconds=5)
    assert abs(datetime.now(event.received_at.tzinfo) - event.received_at) < timedelta(minutes=1)
