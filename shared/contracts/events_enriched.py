"""`events.enriched`: an event attributed to a lead, with normalised traits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.contracts.base import AwareDatetime, Contract, Part
from shared.contracts.events_raw import CallType


class Consent(Part):
    """What the lead allowed. Travels with every event so no service contacts an opted-out lead."""

    email_opt_out: bool = False


class LeadProfile(Part):
    """The lead as enrich knows it after this event (normalised traits)."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    company_domain: str | None = None


class EnrichedEvent(Contract):
    """A raw event attributed to a stable `lead_id`. Key on `events.enriched`: lead_id.

    `identified` is true when the lead has an email or userId: the anonymous -> known decision
    belongs to enrich and travels here. `received_at` is the original ingest time, carried so the
    router can measure speed-to-lead.
    """

    schema_version: Literal[1] = 1
    message_id: str = Field(min_length=1)
    lead_id: str = Field(min_length=1)
    type: CallType
    event: str | None = None
    name: str | None = None
    source: str
    timestamp: AwareDatetime
    received_at: AwareDatetime
    identified: bool
    profile: LeadProfile = Field(default_factory=LeadProfile)
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    account_id: str | None = None
    consent: Consent = Field(default_factory=Consent)
