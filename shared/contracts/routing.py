"""`routing.sdr`, `routing.nurture`, `routing.withdrawals` and `routing.current`: the routing
decisions CRMs consume (the contract: docs/architecture.md, "Topics"; how to read them: the
README's "For CRM integrators").

A lead has at most one current route. Every message the router emits about a lead on
`routing.sdr`, `routing.nurture` or `routing.withdrawals` carries the lead's next `sequence`
(1, 2, 3, ...: no gaps, no repeats, fixed when the message is stored, so a replay sends the same
number): a consumer of several of these topics orders a lead's messages by it and ignores one
older than what it has applied. `routing.current` holds each lead's current route as state.

The JSON Schema of every topic value is published in `shared/contracts/schemas/` (generated from
these models by `python -m shared.contracts.schemas`; a test fails when a file is stale).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from shared.contracts.base import AwareDatetime, Contract, Part
from shared.contracts.leads import Score, Stage

Strategy = Literal[
    "account_owner",
    "round_robin",
    "overflow",
    "fallback_queue",
    "sla_reassigned",
    "sla_escalated",
    "nurture_track",
]


class Owner(Part):
    """The person who must act on the lead (a rep, an account owner, or an escalation manager)."""

    id: str
    name: str
    email: str
    team: str


class RoutingDecision(Contract):
    """A routing decision. Key: lead_id.

    One decision per lifecycle transition; `decision_id` is stable on replay (a CRM may upsert
    by it). When the owner does not accept within `sla_due_at` (no `accepted` on crm.feedback),
    the router reassigns: a new decision with a new `decision_id`, the same `transition_id`,
    `supersedes` = the decision it replaces and `strategy` "sla_reassigned" or "sla_escalated".
    A CRM should treat the newest decision of a transition as the current one.

    An sdr decision names an `owner`, or a `queue` when nobody could take the lead (every rep
    out of office, out of hours or at their daily cap; `reasons` says why). A nurture decision
    names a `track`.

    Speed-to-lead: `speed_to_lead_ms` is `stored_at - received_at`, from ingest receiving the
    triggering event to the router storing this decision. `stored_at` is stamped as the router's
    last step before the statement that writes the decision, in the transaction that commits it:
    its locks, reads and choice are counted; only that write and the COMMIT follow, then the
    produce (the record's Kafka timestamp: 5 ms later at the median in the 2026-12-02 bench).
    `decided_at` is the router's clock for the decision (when it took the triggering record up;
    `sla_due_at` counts from it). `stored_at` was added in 2026-12 (additive, same schema
    version); a decision without it was measured to `decided_at`, leaving the router's own time
    out.

    `routing_version` names the published routing configuration the decision was made under
    (a version of the router's versioned configuration: "1", "2", ...); a reassignment names the
    version live when it was made. Added in 2026-12 (additive, same schema version).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # The route's target rule (validator below), stated for JSON Schema users as well.
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"route": {"const": "sdr"}}},
                    "then": {
                        "oneOf": [
                            {
                                "required": ["owner"],
                                "properties": {
                                    "owner": {"type": "object"},
                                    "queue": {"type": "null"},
                                },
                            },
                            {
                                "required": ["queue"],
                                "properties": {
                                    "owner": {"type": "null"},
                                    "queue": {"type": "string"},
                                },
                            },
                        ]
                    },
                },
                {
                    "if": {"properties": {"route": {"const": "nurture"}}},
                    "then": {
                        "required": ["track"],
                        "properties": {"track": {"type": "string", "minLength": 1}},
                    },
                },
            ]
        },
    )

    schema_version: Literal[1] = 1
    decision_id: str
    transition_id: str | None = Field(
        default=None, description="the leads.lifecycle transition this decision answers"
    )
    lead_id: str
    route: Literal["sdr", "nurture"]
    email: str | None
    name: str | None
    company: str | None
    stage: Stage
    score: Score
    owner: Owner | None = None
    queue: str | None = Field(default=None, description="sdr only: the fallback queue, no owner")
    track: str | None = None
    strategy: Strategy | None = Field(default=None, description="how the target was chosen")
    territory: str | None = Field(default=None, description="the territory rule that matched")
    routing_version: str | None = Field(
        default=None,
        description="the version of the router's routing configuration that made this "
        "decision (absent from decisions made before routing was versioned, 2026-12)",
    )
    reasons: list[str] = Field(default_factory=list)
    account_id: str | None = None
    supersedes: str | None = Field(
        default=None, description="the decision_id this one replaces (SLA breach)"
    )
    received_at: AwareDatetime
    decided_at: AwareDatetime
    stored_at: AwareDatetime | None = Field(
        default=None,
        description="when the router stored the decision, just before its commit; "
        "speed_to_lead_ms counts to here (absent from decisions made before 2026-12)",
    )
    sla_due_at: AwareDatetime | None = None
    speed_to_lead_ms: int = Field(
        ge=0, description="from ingest receiving the triggering event to stored_at, in ms"
    )
    sequence: int | None = Field(
        default=None,
        ge=1,
        description="the lead's routing sequence: one more than the lead's previous message on "
        "routing.sdr, routing.nurture or routing.withdrawals (absent from decisions made before "
        "2026-12)",
    )
    released_at: AwareDatetime | None = Field(
        default=None,
        description="nurture only: when the decision was sent, once the lead had settled (a "
        "nurture decision waits the routing's settle time, and a change of stage meanwhile "
        "cancels it); absent from sdr decisions, which are never held",
    )

    @model_validator(mode="after")
    def _route_has_its_target(self) -> RoutingDecision:
        if self.route == "sdr" and self.released_at is not None:
            raise ValueError("an sdr decision is never held: released_at is for nurture")
        if self.route == "sdr" and (self.owner is None) == (self.queue is None):
            raise ValueError("an sdr decision needs an owner or a queue (not both)")
        if self.route == "nurture" and not self.track:
            raise ValueError("a nurture decision needs a track")
        return self


WithdrawalCause = Literal["replaced", "not_routed", "stage_changed", "sla_breached"]


class RoutingWithdrawal(Contract):
    """`routing.withdrawals`: decision `decision_id` no longer holds. Key: lead_id.

    Sent when a lead's current route ends, in the lead's sequence before whatever replaces it:
    - `replaced`: a later decision (`replaced_by`) routes the lead elsewhere: a nurture lead that
      became an MQL, an SDR lead recycled to nurture, a nurture track changed with the stage;
    - `sla_breached`: the owner did not accept in time; `replaced_by` is the reassignment or
      the escalation;
    - `not_routed`: the lead is no longer routed (disqualified, unsubscribed, a suppression
      rule): nothing replaces the route and `routing.current` gets a tombstone;
    - `stage_changed`: a nurture lead moved to a stage that is not nurtured (sales took it):
      its enrolment ends, nothing replaces it.
    An sdr route stays current when sales moves the lead on (sql, sqo, customer): the owner
    keeps it. `withdrawal_id` is stable on replay (a consumer may upsert by it)."""

    schema_version: Literal[1] = 1
    withdrawal_id: str
    decision_id: str = Field(description="the decision that no longer holds")
    lead_id: str
    route: Literal["sdr", "nurture"] = Field(description="the withdrawn decision's route")
    cause: WithdrawalCause
    reason: str = Field(description="why, in words (a rep or a marketer reads it)")
    replaced_by: str | None = Field(
        default=None, description="the decision_id that replaces it (replaced, sla_breached)"
    )
    sequence: int = Field(ge=1, description="the lead's routing sequence (module doc)")
    withdrawn_at: AwareDatetime

    @model_validator(mode="after")
    def _replacement_matches_cause(self) -> RoutingWithdrawal:
        replacing = self.cause in ("replaced", "sla_breached")
        if replacing != (self.replaced_by is not None):
            raise ValueError(f"a {self.cause!r} withdrawal {'needs' if replacing else 'has no'}"
                             " replaced_by")  # fmt: skip
        return self
