"""Poison messages on consumed topics end in `<topic>.dlq` with the reason; the pipeline goes on."""

from __future__ import annotations

import uuid

import orjson

from shared.topics import EVENTS_ENRICHED, EVENTS_RAW, LEADS_LIFECYCLE, ROUTING_SDR
from tests.fixtures.pipeline import Pipeline, Record


async def test_malformed_messages_are_dead_lettered_and_the_pipeline_continues(
    pipeline: Pipeline,
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    garbage = b"\x00\xffnot json at all"
    wrong_schema = orjson.dumps({"lead_id": "x", "hello": "world"})
    no_identity = orjson.dumps(
        {
            "type": "track",
            "messageId": "m-placeholder",
            "source": "s",
            "event": "Demo Requested",
            "receivedAt": "2026-11-23T10:00:00Z",
            "timestamp": "2026-11-23T10:00:00Z",
            "userId": "undefined",
        }
    )
    pipeline.produce_raw(EVENTS_RAW, garbage, key=b"g1")
    pipeline.produce_raw(EVENTS_RAW, no_identity, key=b"g2")
    pipeline.produce_raw(EVENTS_ENRICHED, wrong_schema, key=b"g3")
    pipeline.produce_raw(LEADS_LIFECYCLE, b"[1, 2, 3]", key=b"g4")

    email = f"after.poison.{uuid.uuid4().hex[:6]}@globex.com"
    await pipeline.post(
        "/v1/identify", {"userId": "u-after", "traits": {"email": email, "title": "VP Sales"}}
    )
    await pipeline.post("/v1/track", {"userId": "u-after", "event": "Demo Requested"})

    def errors(records: list[Record]) -> dict[bytes | None, str]:
        return {r.value: r.headers["leadflow.error"].decode() for r in records}

    raw_dlq = await pipeline.read(
        EVENTS_RAW.dlq_name(pipeline.prefix), until=lambda records: len(records) >= 2
    )
    assert set(errors(raw_dlq)) == {garbage, no_identity}
    assert errors(raw_dlq)[garbage].startswith("not JSON")
    assert "no usable userId, email or anonymousId" in errors(raw_dlq)[no_identity]
    garbage_letter = next(r for r in raw_dlq if r.value == garbage)
    assert garbage_letter.key == b"g1"
    assert garbage_letter.headers["leadflow.service"] == b"enrich"
    assert (
        garbage_letter.headers["leadflow.source_topic"]
        == EVENTS_RAW.full_name(pipeline.prefix).encode()
    )
    assert int(garbage_letter.headers["leadflow.source_offset"]) >= 0

    enriched_dlq = await pipeline.read(
        EVENTS_ENRICHED.dlq_name(pipeline.prefix), until=lambda records: len(records) >= 1
    )
    assert "invalid EnrichedEvent" in errors(enriched_dlq)[wrong_schema]
    lifecycle_dlq = await pipeline.read(
        LEADS_LIFECYCLE.dlq_name(pipeline.prefix), until=lambda records: len(records) >= 1
    )
    assert "expected a JSON object" in errors(lifecycle_dlq)[b"[1, 2, 3]"]

    decisions = await pipeline.read(
        ROUTING_SDR.full_name(pipeline.prefix),
        until=lambda records: any(r.json()["email"] == email for r in records),
    )
    assert [r.json()["stage"] for r in decisions if r.json()["email"] == email] == ["mql"]
