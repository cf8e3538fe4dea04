"""Properties of intake for any input (hypothesis): every body is either accepted as valid
`events.raw` values or refused with reasons; nothing else can happen (no 500). And valid calls
pass through unchanged in what the client said."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.intake import Refused, decompressed, events_from, json_object, limit_for
from services.ingest.tracking import CALLS
from services.ingest.wire import EncodedEvent
from shared.codec import decode
from shared.contracts import RawEvent
from tests.unit.builders import NOW

pytestmark = pytest.mark.unit

ENDPOINTS = [*CALLS, "batch"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    # what orjson parses as integers (larger numbers arrive as floats)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Values drawn where Segment's fields are, so the generator reaches deep into validation.
field_names = st.sampled_from(
    [
        "type", "userId", "anonymousId", "previousId", "groupId", "messageId", "event", "name",
        "category", "timestamp", "sentAt", "traits", "properties", "context", "integrations",
        "writeKey",
    ]
)  # fmt: skip
call_like = st.dictionaries(field_names, json_values | st.sampled_from(list(CALLS)), max_size=8)
bodies = call_like | st.fixed_dictionaries(
    {"batch": st.lists(call_like | json_values, max_size=5)},
    optional={"context": json_values, "sentAt": json_values, "integrations": json_values},
)


def outcome(body: Any, endpoint: str) -> list[EncodedEvent] | Refused:
    try:
        return events_from(body, endpoint=endpoint, source="website", received_at=NOW)
    except Refused as refused:
        return refused


@SETTINGS
@given(body=bodies, endpoint=st.sampled_from(ENDPOINTS))
def test_any_body_is_accepted_as_valid_events_or_refused_with_reasons(
    body: dict[str, Any], endpoint: str
) -> None:
    result = outcome(body, endpoint)

    if isinstance(result, Refused):
        assert result.reasons
        assert all(isinstance(reason, str) and reason for reason in result.reasons)
    else:
        assert len(result) == (len(body["batch"]) if endpoint == "batch" else 1)
        for record in result:
            # What goes on the wire decodes as the topic's contract, is byte for byte what the
            # contract model writes, and is keyed as the contract says.
            event = decode(record.value, RawEvent)
            assert record.value == event.model_dump_json(by_alias=True).encode()
            assert record.key == event.partition_key.encode()


NOT_JSON, NOT_AN_OBJECT = "body is not valid JSON: ", "body must be a JSON object"


def _held(raw: bytes) -> dict[str, Any] | str:
    """The JSON object arbitrary bytes hold, else the reason they are refused for."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NOT_JSON
    return value if isinstance(value, dict) else NOT_AN_OBJECT


# Bodies as bytes, each with the JSON object it holds or the reason it is refused for. Random
# bytes are almost never a JSON object; what clients send mostly is (or nearly is).
raw_bodies = st.one_of(
    st.binary(max_size=200).map(lambda raw: (raw, _held(raw))),
    bodies.map(lambda body: (orjson.dumps(body), body)),
    # truncated: the closing brace of an object is missing
    bodies.map(lambda body: (orjson.dumps(body)[:-1], NOT_JSON)),
    json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: (orjson.dumps(v), NOT_AN_OBJECT)
    ),
)


@SETTINGS
@given(sent=raw_bodies, gzipped=st.booleans(), endpoint=st.sampled_from(ENDPOINTS))
def test_any_bytes_are_parsed_or_refused(
    sent: tuple[bytes, dict[str, Any] | str], gzipped: bool, endpoint: str
) -> None:
    raw, expected = sent
    body = gzip.compress(raw) if gzipped else raw

    def parse() -> dict[str, Any]:
        plain = decompressed(
            body, content_encoding="gzip" if gzipped else None, limit=limit_for(endpoint)
        )
        return json_object(plain)

    if isinstance(expected, str):
        # Refused, with the one reason the client gets as a 400.
        with pytest.raises(Refused) as refused:
            parse()
        assert len(refused.value.reasons) == 1
        assert refused.value.reasons[0].startswith(expected), refused.value.reasons
        return
    # Parsed: the very object sent, gzipped or not.
    parsed = parse()
    assert parsed == expected
    # And then accepted as valid events, or refused with reasons (never anything else).
    result = outcome(parsed, endpoint)
    if isinstance(result, Refused):
        assert result.reasons
        assert all(isinstance(reason, str) and reason for reason in result.reasons)
    else:
        assert len(result) == (len(parsed["batch"]) if endpoint == "batch" else 1)
        for record in result:
            assert decode(record.value, RawEvent).partition_key.encode() == record.key


ids = st.text(min_size=1, max_size=30).filter(lambda text: text.strip() == text and text != "")
tracks = st.fixed_dictionaries(
    {
        "type": st.just("track"),
        "anonymousId": ids,
        "event": ids,
        "messageId": ids,
        "properties": st.dictionaries(st.text(max_size=8), json_scalars, max_size=4),
    }
)


@SETTINGS
@given(calls=st.lists(tracks, min_size=1, max_size=20))
def test_valid_calls_keep_order_ids_and_properties(calls: list[dict[str, Any]]) -> None:
    records = events_from({"batch": calls}, endpoint="batch", source="website", received_at=NOW)
    wire = [orjson.loads(record.value) for record in records]

    assert [value["messageId"] for value in wire] == [call["messageId"] for call in calls]
    assert [record.key.decode() for record in records] == [call["anonymousId"] for call in calls]
    # Properties survive the trip to the wire bit for bit (as JSON).
    assert [value["properties"] for value in wire] == [
        orjson.loads(orjson.dumps(call["properties"])) for call in calls
    ]
