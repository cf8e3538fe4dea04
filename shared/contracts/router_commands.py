"""`router.commands`: router's internal work queue (only router produces and consumes it).

- `sla_check`: the decision timer found sdr decision `decision_id` past its `sla_due_at` with
  no acceptance from the CRM; the consumer re-checks under a row lock and, if it is still open,
  records the breach and reassigns or escalates.
- `nurture_release`: the decision timer found nurture decision `decision_id` at the end of its
  settle time; the consumer re-checks under a row lock and, if no stage change closed it
  meanwhile, sends it (added 2026-12).
Key: lead_id. Applying a command twice changes nothing the second time (a decision that was
already superseded, accepted, sent or cancelled is left alone).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.contracts.base import AwareDatetime, Contract


class RouterCommand(Contract):
    schema_version: Literal[1] = 1
    command_id: str = Field(min_length=1)
    kind: Literal["sla_check", "nurture_release"]
    lead_id: str = Field(min_length=1)
    decision_id: str = Field(min_length=1)
    at: AwareDatetime

    @property
    def partition_key(self) -> str:
        """The topic's key: a lead's checks stay in order with its other messages."""
        return self.lead_id
