"""`routing.sdr` and `routing.nurture`: the routing decision CRMs consume (DESIGN.md contract)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.contracts.base import AwareDatetime, Contract, Part
from shared.contracts.leads import Score, Stage


class Owner(Part):
    id: str
    name: str
    email: str
    team: str


class RoutingDecision(Contract):
    """One decision per lifecycle transition. Key: lead_id. `decision_id` is stable on replay.

    `speed_to_lead_ms` is `decided_at - received_at`: from ingest receiving the triggering event
    to this decision.
    """

    schema_version: Literal[1] = 1
    decision_id: str
    lead_id: str
    route: Literal["sdr", "nurture"]
    email: str | None
    name: str | None
    company: str | None
    stage: Stage
    score: Score
    owner: Owner | None = None
    track: str | None = None
    reasons: list[str] = Field(default_factory=list)
    account_id: str | None = None
    received_at: AwareDatetime
    decided_at: AwareDatetime
    sla_due_at: AwareDatetime | None = None
    speed_to_lead_ms: int = Field(ge=0)

    @model_validator(mode="after")
    def _route_has_its_target(self) -> RoutingDecision:
        if self.route == "sdr" and self.owner is None:
            raise ValueError("an sdr decision needs an owner")
        if self.route == "nurture" and not self.track:
            raise ValueError("a nurture decision needs a track")
        return self
