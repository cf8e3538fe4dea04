"""What ingest puts on `events.raw`: each event's key and value, as bytes, built once.

A tracking call is validated once (by its call model in `tracking`); its `events.raw` value is
then assembled as a dict with the wire names and serialised once with orjson, instead of being
validated a second time as a `RawEvent` and serialised by pydantic (together about half of
ingest's time per event when profiled). The bytes are the same as `RawEvent`'s own JSON:
the unit tests decode them with the contract and compare them with it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from shared.contracts import RawEvent

# Datetimes in UTC are written `...Z`, as pydantic writes them, so the bytes match the model's.
_JSON_OPTIONS = orjson.OPT_UTC_Z


class EncodedEvent(NamedTuple):
    """One `events.raw` record: `key` (anonymousId, else userId) and `value` (JSON), as bytes.
    (A tuple: a frozen dataclass's `__init__` showed up at 1 us per event.)"""

    key: bytes
    value: bytes


def encode_fields(fields: dict[str, Any]) -> EncodedEvent:
    """A raw event given by its wire fields (`tracking.raw_event_fields`), as a record.

    The fields must already be valid for `RawEvent`; nothing here checks them again.
    Raises `orjson.JSONEncodeError` for a value JSON cannot hold.
    """
    key = fields["anonymousId"] or fields["userId"]
    return EncodedEvent(key.encode(), orjson.dumps(fields, option=_JSON_OPTIONS))


def encode_event(event: RawEvent) -> EncodedEvent:
    """A validated `RawEvent` (e.g. a lead-list row) as a record."""
    return EncodedEvent(
        key=event.partition_key.encode(), value=event.model_dump_json(by_alias=True).encode()
    )
