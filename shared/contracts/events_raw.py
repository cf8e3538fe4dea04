"""`events.raw`: a Segment-spec call as ingest accepted it.

Field names on the wire are Segment's own (camelCase: `anonymousId`, `messageId`, ...), so a raw
event is literally the call a tracking client sent, plus what ingest stamped on arrival.

Who a call is about: its userId or anonymousId, as Segment requires. One exception: a lead
imported from a list (`services/ingest/lead_import`) asserts only what the list knows, so its
identify call may carry neither and name the person by `traits.email` alone; it is recognised
by `context.import` (an object). Every other call still needs an id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from shared.contracts.base import AwareDatetime, Contract

CallType = Literal["identify", "track", "page", "screen", "group", "alias"]


class RawEvent(Contract):
    """One tracking call. Key on `events.raw`: anonymousId, else userId, else (an imported
    lead's identify call, which may have neither) `traits.email`.

    `timestamp` is the event time after Segment's clock-skew correction
    (`receivedAt - (sentAt - originalTimestamp)`), computed once by ingest so every consumer,
    and every replay, sees the same value; `original_timestamp` keeps what the client sent.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    schema_version: Literal[1] = 1
    type: CallType
    message_id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, description="name of the source the write key belongs to")
    received_at: AwareDatetime
    timestamp: AwareDatetime
    original_timestamp: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    anonymous_id: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    previous_id: str | None = Field(default=None, max_length=200)
    group_id: str | None = Field(default=None, max_length=200)
    event: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    category: str | None = Field(default=None, max_length=200)
    traits: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identified_somehow(self) -> RawEvent:
        if not (self.user_id or self.anonymous_id or self._imported_lead_email()):
            raise ValueError(
                "a call needs userId or anonymousId (only an imported lead's identify call, "
                "with context.import, may be identified by traits.email alone)"
            )
        if self.type == "track" and not self.event:
            raise ValueError("a track call needs an event name")
        if self.type == "alias" and not (self.previous_id and self.user_id):
            raise ValueError("an alias call needs previousId and userId")
        if self.type == "group" and not self.group_id:
            raise ValueError("a group call needs a groupId")
        return self

    def _imported_lead_email(self) -> str | None:
        """The email of an imported lead's identify call (`context.import` an object and a
        non-blank `traits.email`), else None."""
        if self.type != "identify" or not isinstance(self.context.get("import"), dict):
            return None
        address = self.traits.get("email")
        return address if isinstance(address, str) and address.strip() else None

    @property
    def partition_key(self) -> str:
        """anonymousId, else userId, else an imported lead's `traits.email`: a visitor's calls,
        and one imported person's rows, stay in order on one partition."""
        key = self.anonymous_id or self.user_id or self._imported_lead_email()
        assert key is not None  # guaranteed by the validator
        return key


def corrected_timestamp(
    *, received_at: datetime, sent_at: datetime | None, original: datetime | None
) -> datetime:
    """Segment's clock-skew correction: `receivedAt - (sentAt - originalTimestamp)`.

    Without `sentAt` the client's clock cannot be corrected and its timestamp is used as sent;
    without any client timestamp the event happened when it was received.
    """
    if original is None:
        return received_at
    if sent_at is None:
        return original
    skew: timedelta = sent_at - original
    return received_at - skew
