"""`leads.scored` and `leads.lifecycle`: what score decided about a lead."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from shared.contracts.base import AwareDatetime, Contract, Part
from shared.contracts.events_enriched import AccountMatch, Consent, Firmographics, LeadProfile


class Stage(StrEnum):
    """Lifecycle stages (docs/domain.md, "The lead lifecycle"). Forward path: `FORWARD_ORDER`."""

    ANONYMOUS = "anonymous"
    KNOWN = "known"
    LEAD = "lead"
    MQL = "mql"
    SQL = "sql"
    SQO = "sqo"
    CUSTOMER = "customer"
    RECYCLED = "recycled"
    DISQUALIFIED = "disqualified"


FORWARD_ORDER: tuple[Stage, ...] = (
    Stage.ANONYMOUS,
    Stage.KNOWN,
    Stage.LEAD,
    Stage.MQL,
    Stage.SQL,
    Stage.SQO,
    Stage.CUSTOMER,
)


class Score(Part):
    """fit + behaviour = total. `grade` (fit, A best to D) and `band` (behaviour, 1 hottest to 4)
    make the `priority` cell of the matrix, e.g. "A1" for the hottest leads."""

    fit: int
    behaviour: int
    total: int
    grade: str = Field(description="fit grade A (best) to D")
    band: int | None = Field(default=None, ge=1, le=4, description="behaviour band, 1 hottest")
    priority: str | None = Field(default=None, description="grade + band, e.g. A1")


class Contribution(Part):
    """One rule's points for one event: the explanation of a score change."""

    rule_id: str
    points: int
    reason: str


class Factor(Part):
    """One reason of a likelihood, in the users' words, and its share of the log-odds."""

    description: str = Field(description='e.g. "asked for a demo", "title contains \'student\'"')
    effect: float = Field(description="its share of the log-odds: above 0 raises the likelihood")


class Likelihood(Part):
    """The published model's probability that the lead converts (by default: is won) within
    the model's horizon, and its strongest factors each way (docs/learning.md)."""

    probability: float = Field(ge=0, le=1)
    model_version: str
    horizon_days: float
    up: list[Factor] = Field(default_factory=list, description="strongest raising it first")
    down: list[Factor] = Field(default_factory=list, description="strongest lowering it first")


class FirstTouch(Part):
    """Where the lead came from (first-touch attribution): of each origin fact, the first
    non-empty value seen among the messages scored for the lead, in the order they were scored,
    kept once known (a later campaign does not replace it). Normalised as score's learning
    normalises them: whitespace collapsed, casefolded, at most 80 characters. None: no message
    of the lead carried that fact yet."""

    source: str | None = Field(
        default=None, description="the `source` of the write key the lead's first message came with"
    )
    import_list: str | None = Field(
        default=None, description="the first lead list it was imported with (context.import.list)"
    )
    campaign: str | None = Field(default=None, description="UTM campaign (context.campaign.name)")
    campaign_source: str | None = Field(
        default=None, description="UTM source (context.campaign.source)"
    )
    campaign_medium: str | None = Field(
        default=None, description="UTM medium (context.campaign.medium)"
    )


class LeadScored(Contract):
    """A score change. Key: lead_id. Emitted once per (lead, triggering message)."""

    schema_version: Literal[1] = 1
    lead_id: str
    message_id: str = Field(description="the event that changed the score")
    score: Score
    contributions: list[Contribution]
    rule_version: str
    scored_at: AwareDatetime
    received_at: AwareDatetime
    likelihood: Likelihood | None = Field(
        default=None, description="while a model is published, for an identified lead"
    )


class LifecycleChanged(Contract):
    """A stage change. Key: lead_id. `transition_id` is unique per change (idempotency key).

    Carries the lead's profile, firmographics, matched account, consent and score at the time of
    the change so a consumer (router, CRM) can act on it without a lookup.
    """

    schema_version: Literal[1] = 1
    transition_id: str
    lead_id: str
    from_stage: Stage
    to_stage: Stage
    reason: str
    at: AwareDatetime
    received_at: AwareDatetime = Field(description="ingest time of the triggering event")
    by_sales: bool = Field(default=False, description="a CRM reported the move (crm.feedback)")
    skipped_stages: list[Stage] = Field(
        default_factory=list,
        description="the stages on the way to customer the move jumped over (a lead sales "
        "accepted from `lead` skipped mql): a funnel counts sales-sourced leads by it",
    )
    profile: LeadProfile
    consent: Consent
    firmographics: Firmographics | None = None
    account: AccountMatch | None = None
    account_id: str | None = None
    score: Score
    top_contributions: list[Contribution] = Field(default_factory=list)
    likelihood: Likelihood | None = Field(
        default=None, description="while a model is published, for an identified lead"
    )
    first_touch: FirstTouch | None = Field(
        default=None,
        description="where the lead came from: the first source, import list and campaign (UTM) "
        "seen for it; null while none of them is known",
    )
    rule_version: str | None = Field(
        default=None,
        description="the scoring rules version whose thresholds made the move (the version "
        "`leads.scored` names); null on changes made before rules were versioned",
    )
