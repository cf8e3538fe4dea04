"""Bad input on every consumed topic ends as dead letters with reasons; the services keep running.

Garbage bytes, truncated JSON, JSON of the wrong shape and of the wrong type go onto each topic a
service consumes (as its code subscribes: events.raw and enrich.commands for enrich;
events.enriched, crm.feedback and score.commands for score; leads.lifecycle, crm.feedback and
router.commands for router). Each consumer puts each on `<topic>.dlq` once, with its original
bytes and headers naming the error, the service and the source position; the processes stay up
(no crash loop) and a real lead still goes through to a decision afterwards.

The HTTP side (schemathesis over the OpenAPI document, hypothesis payloads) is
tests/integration/test_tracking_fuzz.py and the lead-import fuzz in tests/integration/
test_lead_import.py; one topic per kind of poison is tests/integration/test_dead_letters.py.
"""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import orjson
import pytest

from shared.topics import ROUTING_SDR, Topic
from tests.fixtures.pipeline import Pipeline
from tests.reliability.accounting import dead_letters
from tests.reliability.subscriptions import subscriptions

CONSUMERS = subscriptions()
CONSUMED = sorted({t for ts in CONSUMERS.values() for t in ts}, key=lambda t: t.name)


def poison(topic: Topic) -> dict[str, bytes]:
    """Kinds of bad value, each unique to its topic (so a letter names where it came from)."""
    example = topic.examples_file.read_bytes()
    tag = topic.name.encode()
    return {
        "garbage": b"\x00\xff\xfe" + tag + b" \x80 not json",
        "truncated": example[: len(example) // 2],
        "wrong-schema": orjson.dumps({"topic": topic.name, "hello": "world", "schema_version": 1}),
        "wrong-type": orjson.dumps([topic.name, 1, 2, 3]),
    }


@pytest.mark.slow  # about 20 s: `make test-slow` (malformed messages dead-lettered: test_dead_letters)
async def test_poison_on_every_consumed_topic_is_dead_lettered_with_reasons(
    pipeline: Pipeline,
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    pids = {name: p.process.pid for name, p in pipeline.processes.items() if p.process}
    consumed_by: dict[Topic, list[str]] = {}
    for service, topics in CONSUMERS.items():
        for topic in topics:
            consumed_by.setdefault(topic, []).append(service)
    for topic in consumed_by:
        for kind, value in poison(topic).items():
            pipeline.produce_raw(topic, value, key=f"poison-{kind}".encode())

    # A real buyer afterwards still becomes an MQL and gets an SDR decision.
    email = f"after.poison.{uuid.uuid4().hex[:6]}@initech.com"
    identify = {"userId": "u-after-poison", "traits": {"email": email, "title": "VP Sales"}}
    assert (await pipeline.post("/v1/identify", identify)).status_code == 200
    demo = {"userId": "u-after-poison", "event": "Demo Requested"}
    assert (await pipeline.post("/v1/track", demo)).status_code == 200
    decisions = await pipeline.read(
        ROUTING_SDR.full_name(pipeline.prefix),
        until=lambda records: len(records) >= 1,
        timeout_s=60,
    )
    assert decisions[0].json()["email"] == email

    letters = await dead_letters(pipeline)
    for topic, services in consumed_by.items():
        dlq, values = topic.dlq_name(pipeline.prefix), poison(topic)
        records = letters.pop(dlq)
        # Each consuming service dead-letters each bad value once, under its own name.
        found = Counter((r.value, r.headers["leadflow.service"].decode()) for r in records)
        expected = Counter((v, s) for v in values.values() for s in services)
        assert found == expected, f"{dlq}: {found} {pipeline.logs()}"
        for record in records:
            assert record.headers["leadflow.error"].decode().strip(), f"{dlq}: no reason"
            assert record.headers["leadflow.source_topic"].decode() == topic.full_name(
                pipeline.prefix
            )
            assert int(record.headers["leadflow.source_offset"]) >= 0
    # Nothing else was dead-lettered (not the buyer's events, not the decisions).
    assert {name: len(records) for name, records in letters.items() if records} == {}

    # No crash loop: the very same processes are alive and ready.
    for name, process in pipeline.processes.items():
        assert process.process is not None
        assert process.process.poll() is None, f"{name} exited {pipeline.logs()}"
        assert process.process.pid == pids[name]
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(pipeline.addresses.health_url(name))).status_code == 200


@pytest.mark.parametrize("topic", CONSUMED, ids=[t.name for t in CONSUMED])
def test_each_poison_value_is_really_invalid_for_its_topic(topic: Topic) -> None:
    """Guards the test above: a value that happened to decode would not be poison at all."""
    from shared.codec import UndecodableMessage, decode

    # Each kind fails for its own reason, so each exercises the step of decoding it is named
    # after (a "wrong-type" refused as "not JSON" would leave the object check untested).
    reasons = {
        "garbage": "not JSON: ",
        "truncated": "not JSON: ",
        "wrong-schema": f"invalid {topic.model.__name__}: ",
        "wrong-type": "expected a JSON object, got list",
    }
    values = poison(topic)
    assert values.keys() == reasons.keys()
    for kind, value in values.items():
        with pytest.raises(UndecodableMessage) as refused:
            decode(value, topic.model)
        assert str(refused.value).startswith(reasons[kind]), (kind, str(refused.value))
