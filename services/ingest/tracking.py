"""The Segment HTTP Tracking API's call shapes, and their conversion to `events.raw` values.

Pure: no I/O, no clock (the arrival time is an argument).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from shared.contracts import RawEvent, corrected_timestamp


class SegmentCall(BaseModel):
    """Fields common to every call. Unknown top-level fields (`channel`, `library`, `_metadata`,
    ...) are accepted and dropped, as Segment does."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    user_id: str | None = Field(default=None, max_length=200)
    anonymous_id: str | None = Field(default=None, max_length=200)
    message_id: str | None = Field(default=None, max_length=200)
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)
    write_key: str | None = None

    @field_validator("user_id", "anonymous_id", "message_id", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        # Segment clients send numeric ids as numbers; they are ids, not quantities.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            return value.strip() or None
        return value

    @field_validator("timestamp", "sent_at")
    @classmethod
    def _utc_when_naive(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _identified(self) -> SegmentCall:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self


class IdentifyCall(SegmentCall):
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(SegmentCall):
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


TrackingCall = IdentifyCall | TrackCall


def to_raw_event(call: TrackingCall, *, source: str, received_at: datetime) -> RawEvent:
    """Stamp a call as ingest accepted it: messageId (kept, or new), receivedAt, source and the
    clock-skew corrected timestamp."""
    traits: dict[str, Any] = {}
    if isinstance(call, IdentifyCall):
        # Some clients (rudder-sdk) put identify traits in context.traits only.
        context_traits = call.context.get("traits")
        traits = {**(context_traits if isinstance(context_traits, dict) else {}), **call.traits}
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
        event=call.event if isinstance(call, TrackCall) else None,
        traits=traits,
        properties=call.properties if isinstance(call, TrackCall) else {},
        context=call.context,
        integrations=call.integrations,
    )
