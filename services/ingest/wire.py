"""What ingest puts on `events.raw`: each event's key and value, as bytes, built once.

Every event (a tracking call: `tracking.raw_event_fields`; a lead-list row:
`lead_import.events.identify_event`) is given by the `events.raw` fields it sets, by their wire
names, and serialised once with orjson, in the contract's field order with the contract's
defaults for the rest: the same JSON as `RawEvent`'s own. Its producer checked what the contract
checks (a call model, a normalised row), so the value is not validated a second time as a
`RawEvent` and written by pydantic: that took intake from 18 to 32 us of CPU per event (bench
traffic, medians of 7 runs), by estimate enough to take ingest's `/v1/batch` figure in the README
(~41 us per event in all) below its goal. The unit tests decode every value with the contract,
as the consumers do, and compare the bytes with the contract's own.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import orjson

from shared.contracts import RawEvent

# Datetimes in UTC are written `...Z`, as pydantic writes them, so the bytes match the model's.
_JSON_OPTIONS = orjson.OPT_UTC_Z

# Every field of the contract by its wire name, in the contract's order, at its default (the
# required ones at pydantic's Undefined, which JSON cannot hold: an event that leaves one out
# fails to encode). Shared by every event: never mutated.
_CONTRACT_DEFAULTS: Final[dict[str, Any]] = {
    field.alias or name: field.get_default(call_default_factory=True)
    for name, field in RawEvent.model_fields.items()
}


class EncodedEvent(NamedTuple):
    """One `events.raw` record: `key` (`RawEvent.partition_key`: anonymousId, else userId, else
    an imported lead's traits.email) and `value` (JSON), as bytes.
    (A tuple: a frozen dataclass's `__init__` showed up at 1 us per event.)"""

    key: bytes
    value: bytes


def encode_fields(fields: dict[str, Any]) -> EncodedEvent:
    """A raw event given by the wire fields it sets, as a record.

    The fields must already be valid for `RawEvent`; nothing here checks them again.
    Raises `orjson.JSONEncodeError` for a value JSON cannot hold.
    """
    value = {**_CONTRACT_DEFAULTS, **fields}
    # The email only when both ids are missing: an imported lead's identify call (see RawEvent).
    key = value["anonymousId"] or value["userId"] or value["traits"]["email"]
    return EncodedEvent(key.encode(), orjson.dumps(value, option=_JSON_OPTIONS))
