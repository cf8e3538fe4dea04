"""The tracking API against hostile or repeated calls: nesting past what the event store writes,
gzip bodies that inflate far, and retries of calls sent without a messageId (issue
"Hardening")."""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any

import orjson
import pytest

from services.ingest.intake import (
    MAX_BATCH_BYTES,
    MAX_NESTING,
    Refused,
    decompressed,
    events_from,
    json_object,
)
from shared.codec import decode
from shared.contracts import RawEvent
from tests.unit.builders import NOW

pytestmark = pytest.mark.unit

IDS = {"anonymousId": "anon-1"}


def deep_call(levels: int, call_type: str = "track") -> bytes:
    """A call whose property `p` is an object nested `levels` deep, as JSON (orjson reads it
    but would not write it)."""
    nest = "traits" if call_type == "identify" else "properties"
    call = {"type": call_type, **IDS, "event": "E", nest: {"p": "__deep__"}}
    text = orjson.dumps(call).decode()
    return text.replace('"__deep__"', '{"k":' * levels + '"x"' + "}" * levels).encode()


def test_a_batch_item_nested_300_levels_deep_is_refused_by_index() -> None:
    first = b'{"type":"track","anonymousId":"a","event":"E"}'
    body = json_object(b'{"batch":[' + first + b"," + deep_call(300) + b"]}")
    with pytest.raises(Refused) as refused:
        events_from(body, endpoint="batch", source="website", received_at=NOW)
    assert refused.value.reasons == [
        f"batch[1]: nested deeper than {MAX_NESTING} levels (objects and lists in one another)"
    ]


@pytest.mark.parametrize("call_type", ["track", "identify"])
def test_a_single_call_nested_300_levels_deep_is_refused(call_type: str) -> None:
    body = json_object(deep_call(300, call_type))
    with pytest.raises(Refused) as refused:
        events_from(body, endpoint=call_type, source="website", received_at=NOW)
    assert refused.value.reasons == [
        f"nested deeper than {MAX_NESTING} levels (objects and lists in one another)"
    ]


def test_a_call_nested_as_deep_as_the_store_writes_is_accepted() -> None:
    body = json_object(b'{"batch":[' + deep_call(MAX_NESTING - 3) + b"]}")
    (record,) = events_from(body, endpoint="batch", source="website", received_at=NOW)
    assert decode(record.value, RawEvent).event == "E"


def test_a_gzip_bomb_on_the_tracking_api_inflates_no_further_than_the_limit() -> None:
    """Verification (this was already so): the inflater's max_length is the endpoint's limit,
    so a 300 MB bomb costs at most the limit in memory before its 400."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = compressor.compress(b'{"batch":[' + b" " * (300 * 1024 * 1024)) + compressor.flush()
    assert len(bomb) < MAX_BATCH_BYTES
    with pytest.raises(Refused, match="larger than 500 KB"):
        decompressed(bomb, content_encoding="gzip", limit=MAX_BATCH_BYTES)


def call_without_message_id(**fields: Any) -> dict[str, Any]:
    return {"type": "track", **IDS, "event": "Signed Up", "properties": {"plan": "pro"}, **fields}


def message_ids(
    body: dict[str, Any], *, received_after_s: float = 0, source: str = "website"
) -> list[str]:
    received_at = NOW + timedelta(seconds=received_after_s)
    records = events_from(body, endpoint="batch", source=source, received_at=received_at)
    return [decode(record.value, RawEvent).message_id for record in records]


def test_a_call_resent_without_a_message_id_gets_the_same_one() -> None:
    first = message_ids({"batch": [call_without_message_id()], "sentAt": NOW.isoformat()})
    # The retry: sent and received later, with a later sentAt.
    retry = message_ids(
        {"batch": [call_without_message_id()], "sentAt": (NOW + timedelta(seconds=9)).isoformat()},
        received_after_s=10,
    )
    assert first == retry
    assert first[0].startswith("derived-")


@pytest.mark.parametrize(
    "other",
    [
        # a different property
        {"batch": [call_without_message_id(properties={"plan": "free"})]},
        # the same call at another client time: another event
        {"batch": [call_without_message_id(timestamp=NOW.isoformat())]},
        # another type with the same ids
        {"batch": [{"type": "page", **IDS, "properties": {"plan": "pro"}}]},
    ],
    ids=["properties", "timestamp", "type"],
)
def test_a_derived_message_id_changes_with_the_content(other: dict[str, Any]) -> None:
    assert message_ids({"batch": [call_without_message_id()]}) != message_ids(other)


def test_a_derived_message_id_depends_on_the_write_keys_source() -> None:
    body = {"batch": [call_without_message_id()]}
    assert message_ids(body, source="website") != message_ids(body, source="careers")


def test_a_client_message_id_is_still_kept() -> None:
    assert message_ids({"batch": [call_without_message_id(messageId="m-1")]}) == ["m-1"]


def test_a_body_of_more_objects_than_any_real_batch_is_refused_before_parsing() -> None:
    flood = b'{"batch":[' + b",".join([b'{"a":{}}'] * 13_000) + b"]}"  # 26,001 objects, 117 KB
    real = orjson.dumps(
        {
            "batch": [
                {"type": "track", **IDS, "event": "E", "properties": {"n": n}} for n in range(2400)
            ]
        }
    )

    with pytest.raises(Refused) as refused:
        json_object(flood)

    assert "more than 25,000 objects and lists" in refused.value.reasons[0]
    assert len(json_object(real)["batch"]) == 2400, "a real batch of 130 KB passes"
