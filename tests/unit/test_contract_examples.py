"""Every topic's example payloads are valid instances of its model, and the models refuse bad
values with a reason a person can read (the reason is what lands on the dead-letter topic)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from shared.codec import UndecodableMessage, decode, encode
from shared.contracts import CrmFeedback, RawEvent, RoutingDecision, corrected_timestamp
from shared.topics import ALL_TOPICS, EVENTS_RAW, ROUTING_NURTURE, ROUTING_SDR, Topic
from tests.unit.builders import NOW, raw_event

pytestmark = pytest.mark.unit


def _examples(topic: Topic) -> list[Any]:
    if not topic.examples_file.exists():
        return []  # reported by test_every_topic_has_examples, not as a collection error
    examples = orjson.loads(topic.examples_file.read_bytes())
    return examples if isinstance(examples, list) else [examples]


EXAMPLES = [
    pytest.param(topic, example, id=f"{topic.name}[{i}]")
    for topic in ALL_TOPICS
    for i, example in enumerate(_examples(topic))
]


@pytest.mark.parametrize(("topic", "example"), EXAMPLES)
def test_example_decodes_and_round_trips(topic: Topic, example: Any) -> None:
    value = decode(orjson.dumps(example), topic.model)

    assert orjson.loads(encode(value)) == example


@pytest.mark.parametrize(("topic", "example"), EXAMPLES)
def test_encode_writes_what_orjson_writes_of_the_dumped_value(topic: Topic, example: Any) -> None:
    """encode uses pydantic's JSON serialiser; the bytes on the wire are what dumping the value
    to Python and that to JSON with orjson gives."""
    value = decode(orjson.dumps(example), topic.model)

    assert encode(value) == orjson.dumps(value.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_topic_has_examples(topic: Topic) -> None:
    assert topic.examples_file.exists(), f"no examples file {topic.examples_file}"
    examples = orjson.loads(topic.examples_file.read_bytes())
    assert isinstance(examples, list), "an examples file holds a JSON list"
    assert examples, "an examples file holds at least one example"


def test_no_examples_file_for_an_unknown_topic() -> None:
    files = {topic.examples_file for topic in ALL_TOPICS}
    directory = ALL_TOPICS[0].examples_file.parent

    assert set(directory.glob("*.json")) <= files


@pytest.mark.parametrize(
    "example", _examples(EVENTS_RAW), ids=lambda e: f"{e['type']}:{e['messageId'][:12]}"
)
def test_raw_examples_carry_the_skew_corrected_timestamp(example: dict[str, Any]) -> None:
    event = decode(orjson.dumps(example), RawEvent)

    assert event.timestamp == corrected_timestamp(
        received_at=event.received_at, sent_at=event.sent_at, original=event.original_timestamp
    )


@pytest.mark.parametrize(
    ("topic", "example"),
    [p for p in EXAMPLES if p.values[0] in (ROUTING_SDR, ROUTING_NURTURE)],
)
def test_routing_examples_are_on_their_route(topic: Topic, example: Any) -> None:
    decision = decode(orjson.dumps(example), RoutingDecision)

    assert decision.route == topic.name.removeprefix("routing.")
    assert decision.score.total == decision.score.fit + decision.score.behaviour
    # Speed-to-lead counts to when the decision was stored, which follows the router's choice.
    assert decision.stored_at is not None
    assert decision.decided_at <= decision.stored_at
    assert decision.speed_to_lead_ms == int(
        (decision.stored_at - decision.received_at) / timedelta(milliseconds=1)
    )


# ---- refusals ---------------------------------------------------------------------------------


def _raw(**changes: Any) -> bytes:
    """A valid events.raw payload on the wire, with `changes` applied (None removes a field)."""
    payload = orjson.loads(encode(raw_event()))
    payload.update(changes)
    return orjson.dumps({k: v for k, v in payload.items() if v is not None})


def _sdr_decision(**changes: Any) -> bytes:
    payload = {
        "decision_id": "d-1",
        "lead_id": "lead-1",
        "route": "sdr",
        "email": "maria.gonzalez@northwind-logistics.com",
        "name": "María González",
        "company": "Northwind Logistics",
        "stage": "mql",
        "score": {"fit": 35, "behaviour": 75, "total": 110, "grade": "A"},
        "owner": {
            "id": "rep-ada",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "team": "sdr",
        },
        "received_at": "2026-03-02T09:15:41Z",
        "decided_at": "2026-03-02T09:15:41.300Z",
        "sla_due_at": "2026-03-02T09:20:41.300Z",
        "speed_to_lead_ms": 300,
        **changes,
    }
    return orjson.dumps(payload)


def test_the_refusal_fixtures_are_valid_as_given() -> None:
    assert decode(_raw(), RawEvent).anonymous_id == "anon-1"
    assert decode(_sdr_decision(), RoutingDecision).owner is not None


@pytest.mark.parametrize(
    ("raw", "model", "reason"),
    [
        pytest.param(
            _raw(campaign="spring"),
            RawEvent,
            "campaign: Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            _raw(receivedAt="2026-03-02T09:15:41"),
            RawEvent,
            "receivedAt: Value error, timestamp must carry a time zone",
            id="naive-timestamp",
        ),
        pytest.param(
            _raw(anonymousId=None, userId=None),
            RawEvent,
            "a call needs userId or anonymousId",
            id="raw-without-ids",
        ),
        pytest.param(
            _raw(anonymousId="", userId=""),
            RawEvent,
            "a call needs userId or anonymousId",
            id="raw-with-empty-ids",
        ),
        pytest.param(
            _raw(event=None), RawEvent, "a track call needs an event name", id="track-without-event"
        ),
        pytest.param(
            _raw(type="purchase"), RawEvent, "type: Input should be", id="unknown-call-type"
        ),
        pytest.param(
            _sdr_decision(owner=None),
            RoutingDecision,
            "an sdr decision needs an owner",
            id="sdr-without-owner",
        ),
        pytest.param(
            _sdr_decision(route="nurture", owner=None, track=""),
            RoutingDecision,
            "a nurture decision needs a track",
            id="nurture-without-track",
        ),
        pytest.param(
            _sdr_decision(speed_to_lead_ms=-1),
            RoutingDecision,
            "speed_to_lead_ms: Input should be greater than or equal to 0",
            id="negative-speed",
        ),
        pytest.param(
            _sdr_decision(stage="hot"),
            RoutingDecision,
            "stage: Input should be",
            id="unknown-stage",
        ),
        pytest.param(
            orjson.dumps({"feedback_id": "f-1", "outcome": "won", "at": "2026-03-02T09:15:41Z"}),
            CrmFeedback,
            "feedback needs lead_id or email",
            id="feedback-without-lead",
        ),
    ],
)
def test_models_refuse_bad_values(raw: bytes, model: type[BaseModel], reason: str) -> None:
    with pytest.raises(UndecodableMessage, match=f"^invalid {model.__name__}: ") as refused:
        decode(raw, model)

    assert reason in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(None, "empty value (tombstone)", id="tombstone"),
        pytest.param(b"\xff\xfe\x00garbage", "not JSON", id="garbage-bytes"),
        pytest.param(b"", "not JSON", id="empty-bytes"),
        pytest.param(b'{"type": "track",', "not JSON", id="truncated-json"),
        pytest.param(b"[1, 2, 3]", "expected a JSON object, got list", id="json-list"),
        pytest.param(b'"identify"', "expected a JSON object, got str", id="json-string"),
        pytest.param(b"null", "expected a JSON object, got NoneType", id="json-null"),
    ],
)
def test_what_is_not_a_json_object_is_refused_with_a_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(UndecodableMessage, match=re.escape(reason)):
        decode(raw, RawEvent)


def test_a_refusal_lists_every_problem_by_its_wire_name() -> None:
    with pytest.raises(UndecodableMessage) as refused:
        decode(_raw(messageId=None, receivedAt="yesterday"), RawEvent)

    assert "messageId: Field required" in str(refused.value)
    assert "receivedAt: Input should be a valid datetime" in str(refused.value)


def test_an_offset_timestamp_is_kept_with_its_offset() -> None:
    event = decode(_raw(timestamp="2026-03-02T10:15:41+01:00"), RawEvent)

    assert event.timestamp == NOW
    assert event.timestamp.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(_raw(properties={"ratio": None}).replace(b"null", b"NaN"), id="nan"),
        pytest.param(_raw(properties={"ratio": None}).replace(b"null", b"-Infinity"), id="inf"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"type": "track"', id="truncated"),
    ],
)
def test_what_orjson_refuses_is_refused_whichever_parser_reads_it(raw: bytes) -> None:
    with pytest.raises(UndecodableMessage):
        decode(raw, RawEvent)


def test_an_integer_beyond_64_bits_reads_as_orjson_reads_it() -> None:
    raw = _raw(properties={"big": 1}).replace(b'"big":1', b'"big":123456789012345678901234')

    assert decode(raw, RawEvent).properties == {"big": 1.2345678901234568e23}


def test_the_fast_path_gives_the_same_value_as_the_reference_path() -> None:
    for topic in ALL_TOPICS:
        for example in orjson.loads(topic.examples_file.read_bytes()):
            assert decode(orjson.dumps(example), topic.model) == topic.model.model_validate(example)
