"""`crm.feedback`: what sales did with a lead, reported by a CRM."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.contracts.base import AwareDatetime, Contract

Outcome = Literal["accepted", "rejected", "qualified", "disqualified", "won", "lost"]


class CrmFeedback(Contract):
    """Key: lead_id, or email when the CRM does not know the lead_id."""

    schema_version: Literal[1] = 1
    feedback_id: str = Field(min_length=1, description="the CRM's id for this report (idempotency)")
    lead_id: str | None = None
    email: str | None = None
    outcome: Outcome
    reason: str | None = None
    owner_id: str | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _names_a_lead(self) -> CrmFeedback:
        if not (self.lead_id or self.email):
            raise ValueError("feedback needs lead_id or email")
        return self
