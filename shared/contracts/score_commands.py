"""`score.commands`: score's internal work queue (only score produces and consumes it).

Work that may change a lead's stage without a new event goes through the consumer runner like
every event, so it gets the same exactly-once effects and outbox:
- `reevaluate`: the decay sweep asks for a lead's score as of `at` (decay may have taken an MQL
  below the line; long enough below it, the lead is recycled).
- `rescore`: the rules changed; replay the lead's stored history under the running rules,
  replace its ledger, and emit the new score (and a stage change it earns).
Key: lead_id. Applying a command twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.contracts.base import AwareDatetime, Contract


class ScoreCommand(Contract):
    schema_version: Literal[1] = 1
    command_id: str = Field(min_length=1)
    kind: Literal["reevaluate", "rescore"]
    lead_id: str = Field(min_length=1)
    at: AwareDatetime

    @property
    def partition_key(self) -> str:
        """The topic's key: a lead's commands stay in order with each other."""
        return self.lead_id
