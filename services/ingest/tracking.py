"""The Segment HTTP Tracking API's call shapes, and their conversion to `events.raw` values.

Six calls (identify, track, page, screen, group, alias), each posted alone to `/v1/<type>` or
mixed in `/v1/batch`. Pure: no I/O, no clock (the arrival time is an argument).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.contracts import corrected_timestamp

Id = Annotated[
    str | None,
    # Segment clients send numeric ids as numbers; they are ids, not quantities. Checked by
    # pydantic itself: a Python validator per id cost a microsecond per event.
    Field(coerce_numbers_to_str=True),
    StringConstraints(strip_whitespace=True, max_length=200),
]
"""An identifier as clients send it: text or a number (taken as text), trimmed. Blank ("")
means absent: read ids with `or None` (`raw_event_fields` does)."""


def as_utc_when_naive(value: datetime) -> datetime:
    """A client time without a time zone is taken as UTC (Segment's libraries send UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SegmentCall(BaseModel):
    """Fields common to every call. Unknown top-level fields (`channel`, `library`, `_metadata`,
    ...) are accepted and dropped, as Segment does."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: str
    user_id: Id = None
    anonymous_id: Id = None
    message_id: Id = None
    timestamp: datetime | None = Field(default=None, description="when it happened (client)")
    sent_at: datetime | None = Field(default=None, description="when the client sent it")
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    write_key: str | None = Field(default=None, description="the write key, if not in Basic auth")

    @field_validator("timestamp", "sent_at")
    @classmethod
    def _utc_when_naive(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc_when_naive(value)

    @model_validator(mode="after")
    def _identified(self) -> SegmentCall:
        missing = self.identity_problem()
        if missing:
            raise ValueError(missing)
        return self

    def identity_problem(self) -> str | None:
        """Why this call cannot be tied to a person, or None when it can."""
        if not (self.user_id or self.anonymous_id):
            return "userId or anonymousId is required"
        return None

    def own_fields(self) -> dict[str, Any]:
        """The `events.raw` fields (wire names) only this type of call has."""
        return {}


class IdentifyCall(SegmentCall):
    """Who a user is, and their traits."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)

    def own_fields(self) -> dict[str, Any]:
        # Some clients (rudder-sdk) put identify traits in context.traits only.
        context_traits = self.context.get("traits")
        if isinstance(context_traits, dict) and context_traits:
            return {"traits": {**context_traits, **self.traits}}
        return {"traits": self.traits}


class TrackCall(SegmentCall):
    """An action a user performed."""

    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)

    def own_fields(self) -> dict[str, Any]:
        return {"event": self.event, "properties": self.properties}


class PageCall(SegmentCall):
    """A web page a user viewed."""

    type: Literal["page"] = "page"
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)

    def own_fields(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "properties": self.properties}


class ScreenCall(SegmentCall):
    """An app screen a user viewed."""

    type: Literal["screen"] = "screen"
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)

    def own_fields(self) -> dict[str, Any]:
        return {"name": self.name, "category": self.category, "properties": self.properties}


class GroupCall(SegmentCall):
    """A user belongs to a group (an account, a company), with the group's traits."""

    type: Literal["group"] = "group"
    group_id: Annotated[
        str,
        Field(coerce_numbers_to_str=True),
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    ]
    traits: dict[str, Any] = Field(default_factory=dict)

    def own_fields(self) -> dict[str, Any]:
        return {"groupId": self.group_id, "traits": self.traits}


class AliasCall(SegmentCall):
    """Two identities are one user: `previousId` (an earlier id) becomes `userId`."""

    type: Literal["alias"] = "alias"
    previous_id: Id = None

    def identity_problem(self) -> str | None:
        if not (self.previous_id and self.user_id):
            return "previousId and userId are required"
        return None

    def own_fields(self) -> dict[str, Any]:
        return {"previousId": self.previous_id or None}


TrackingCall = IdentifyCall | TrackCall | PageCall | ScreenCall | GroupCall | AliasCall

CALLS: dict[str, type[TrackingCall]] = {
    "identify": IdentifyCall,
    "track": TrackCall,
    "page": PageCall,
    "screen": ScreenCall,
    "group": GroupCall,
    "alias": AliasCall,
}
"""Each call type by its `type` (and its endpoint `/v1/<type>`)."""


class BatchRequest(BaseModel):
    """`/v1/batch`: mixed calls, each with its `type`. `context`, `integrations` and `sentAt`
    given here apply to every call (a call's own values win)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    batch: list[Annotated[TrackingCall, Field(discriminator="type")]] = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    sent_at: datetime | None = None
    write_key: str | None = None


def derived_message_id(fields: dict[str, Any]) -> str:
    """A messageId for a call sent without one, from what it says: `derived-` and a 128-bit
    BLAKE2b hash (hex) of the canonical JSON (sorted keys) of its `events.raw` fields but the per-try ones
    (`receivedAt`, `sentAt`, and the `timestamp` corrected with them).

    So a client that resends a call (after a 503 whose events were in fact stored, or a lost
    answer) resends the same messageId, and enrich drops the repeat. The content includes the
    type, the write key's source and the client's own `timestamp`; the consequence: two
    identical calls without messageId and without timestamp, from one source within enrich's
    dedupe window, count once (Segment's libraries always send both, so only hand-made calls
    can meet this; send a messageId or a timestamp to count each)."""
    content = {
        name: value
        for name, value in fields.items()
        if name not in ("messageId", "receivedAt", "sentAt", "timestamp")
    }
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z)
    return "derived-" + hashlib.blake2b(canonical, digest_size=16).hexdigest()


def raw_event_fields(
    call: TrackingCall,
    *,
    source: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
) -> dict[str, Any]:
    """Stamp a call as ingest accepted it: messageId (kept, or `derived_message_id`), receivedAt,
    source and the clock-skew corrected timestamp. `batch_sent_at` (the batch's `sentAt`, aware)
    stands in for a call that has no `sentAt` of its own. Blank ids become absent (None).

    The result is the `events.raw` fields the call sets, by their wire names (the others are the
    contract's defaults: `wire.encode_fields`), valid for `RawEvent` by construction (the call
    model checked every constraint the contract has), so it is serialised without a second
    validation (see `wire`). Raises `OverflowError` when the corrected time falls outside the
    calendar, `orjson.JSONEncodeError` for a call nested too deep to write."""
    # Each type adds its own fields through a method: isinstance() on pydantic models runs
    # pydantic's Python `__instancecheck__`, about 0.6 us each, per event.
    sent_at = call.sent_at or batch_sent_at
    fields = {
        "type": call.type,
        "messageId": call.message_id,
        "source": source,
        "receivedAt": received_at,
        "timestamp": corrected_timestamp(
            received_at=received_at, sent_at=sent_at, original=call.timestamp
        ),
        "originalTimestamp": call.timestamp,
        "sentAt": sent_at,
        "anonymousId": call.anonymous_id or None,
        "userId": call.user_id or None,
        **call.own_fields(),
        "context": call.context,
        "integrations": call.integrations,
    }
    if not call.message_id:
        fields["messageId"] = derived_message_id(fields)
    return fields
