"""The Segment HTTP Tracking API's call shapes, and their conversion to `events.raw` values.

Six calls (identify, track, page, screen, group, alias), each posted alone to `/v1/<type>` or
mixed in `/v1/batch`. Pure: no I/O, no clock (the arrival time is an argument).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from shared.contracts import RawEvent, corrected_timestamp

Id = str | None
"""An identifier as clients send it: text or a number (taken as text); blank means absent."""


def _id_as_text(value: Any) -> Any:
    # Segment clients send numeric ids as numbers; they are ids, not quantities.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return value


class SegmentCall(BaseModel):
    """Fields common to every call. Unknown top-level fields (`channel`, `library`, `_metadata`,
    ...) are accepted and dropped, as Segment does."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: str
    user_id: Id = Field(default=None, max_length=200)
    anonymous_id: Id = Field(default=None, max_length=200)
    message_id: Id = Field(default=None, max_length=200)
    timestamp: datetime | None = Field(default=None, description="when it happened (client)")
    sent_at: datetime | None = Field(default=None, description="when the client sent it")
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    write_key: str | None = Field(default=None, description="the write key, if not in Basic auth")

    @field_validator("user_id", "anonymous_id", "message_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return _id_as_text(value)

    @field_validator("timestamp", "sent_at")
    @classmethod
    def _utc_when_naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

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


class IdentifyCall(SegmentCall):
    """Who a user is, and their traits."""

    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(SegmentCall):
    """An action a user performed."""

    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class PageCall(SegmentCall):
    """A web page a user viewed."""

    type: Literal["page"] = "page"
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class ScreenCall(SegmentCall):
    """An app screen a user viewed."""

    type: Literal["screen"] = "screen"
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class GroupCall(SegmentCall):
    """A user belongs to a group (an account, a company), with the group's traits."""

    type: Literal["group"] = "group"
    group_id: str = Field(min_length=1, max_length=200)
    traits: dict[str, Any] = Field(default_factory=dict)

    @field_validator("group_id", mode="before")
    @classmethod
    def _group_id_as_text(cls, value: Any) -> Any:
        return _id_as_text(value)


class AliasCall(SegmentCall):
    """Two identities are one user: `previousId` (an earlier id) becomes `userId`."""

    type: Literal["alias"] = "alias"
    previous_id: Id = Field(default=None, max_length=200)

    @field_validator("previous_id", mode="before")
    @classmethod
    def _previous_id_as_text(cls, value: Any) -> Any:
        return _id_as_text(value)

    def identity_problem(self) -> str | None:
        if not (self.previous_id and self.user_id):
            return "previousId and userId are required"
        return None


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


def to_raw_event(call: TrackingCall, *, source: str, received_at: datetime) -> RawEvent:
    """Stamp a call as ingest accepted it: messageId (kept, or new), receivedAt, source and the
    clock-skew corrected timestamp."""
    traits: dict[str, Any] = {}
    if isinstance(call, IdentifyCall):
        # Some clients (rudder-sdk) put identify traits in context.traits only.
        context_traits = call.context.get("traits")
        traits = {**(context_traits if isinstance(context_traits, dict) else {}), **call.traits}
    elif isinstance(call, GroupCall):
        traits = call.traits
    return RawEvent(
        type=call.type,
        message_id=call.message_id or str(uuid.uuid4()),
        source=source,
        received_at=received_at,
        timestamp=corrected_timestamp(
            received_at=received_at, sent_at=call.sent_at, original=call.timestamp
        ),
        original_timestamp=call.timestamp,
        sent_at=call.sent_at,
        anonymous_id=call.anonymous_id,
        user_id=call.user_id,
        previous_id=call.previous_id if isinstance(call, AliasCall) else None,
        group_id=call.group_id if isinstance(call, GroupCall) else None,
        event=call.event if isinstance(call, TrackCall) else None,
        name=call.name if isinstance(call, PageCall | ScreenCall) else None,
        category=call.category if isinstance(call, PageCall | ScreenCall) else None,
        traits=traits,
        properties=call.properties if isinstance(call, TrackCall | PageCall | ScreenCall) else {},
        context=call.context,
        integrations=call.integrations,
    )
