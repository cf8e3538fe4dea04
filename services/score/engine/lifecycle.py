"""The lifecycle state machine: which stage a trigger moves a lead to, and which moves are
refused. Pure: no I/O; the caller records, publishes and logs.

Marketing's moves, by evidence (`LEGAL`): identified (anonymous -> known), engaged (-> lead),
qualified by score (-> mql, also from recycled: a recycled lead that earns it again
re-qualifies), decayed below the nurture line for long enough (mql -> recycled). A move not in
the table is illegal: refused, never applied. One correction outside the table: after an
unmerge, a lead in a marketing stage (anonymous, known, lead, mql) goes to the stage its own
messages earn, back or forward (`unmerged_move`).

Sales' moves, from what a CRM reports (`sales_move`): the CRM is where sales records what really
happened, so its outcomes apply from wherever the lead is, whatever marketing's path said:
- accepted -> sql, qualified -> sqo, won -> customer, from any stage before them, jumping over
  the stages the lead did not pass (recorded as `skipped`: a sales-sourced lead, or one the
  rules missed); a lead already further along stays (a late "accepted" of an sqo changes
  nothing);
- rejected and lost -> recycled, from any stage but customer (an mql that sales turns down is
  recycled with the reason); disqualified -> disqualified, likewise;
- out of order: the stage is the one the latest outcome *by its own time* implies. An outcome
  older than the latest one applied is kept in the lead's history as superseded, not applied
  (a won reported before its accepted: the accepted arrives late and the lead stays customer);
- refused, only what cannot happen: a customer stays a customer (a later accepted, qualified,
  rejected, lost or disqualified of a customer is a new deal or an account matter, which the
  CRM tracks as an opportunity, not a lead stage).

`recycled` means "sales said not now": marketing nurtures the lead, and it comes back to sales
either by earning mql again or by sales accepting it directly (then mql is recorded as skipped).
`disqualified` is not final either when sales reports later progress: the CRM is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from shared.contracts import Stage


class Trigger(StrEnum):
    IDENTIFIED = "identified"
    ENGAGED = "engaged"
    QUALIFIED = "qualified"
    SDR_ACCEPTED = "accepted"
    AE_CONFIRMED = "qualified_by_ae"
    WON = "won"
    REJECTED = "rejected"
    LOST = "lost"
    DECAYED = "decayed"
    DISQUALIFIED = "disqualified"
    UNMERGED = "unmerged"


# The call types that show interest (a lead who only identified is known, not engaged).
ENGAGEMENT_TYPES = frozenset({"track", "page", "screen"})

_EARLY = (Stage.ANONYMOUS, Stage.KNOWN, Stage.LEAD)
MARKETING_STAGES = (*_EARLY, Stage.MQL)

LEGAL: dict[tuple[Stage, Trigger], Stage] = {
    (Stage.ANONYMOUS, Trigger.IDENTIFIED): Stage.KNOWN,
    **{(stage, Trigger.ENGAGED): Stage.LEAD for stage in (Stage.ANONYMOUS, Stage.KNOWN)},
    **{(stage, Trigger.QUALIFIED): Stage.MQL for stage in (*_EARLY, Stage.RECYCLED)},
    (Stage.MQL, Trigger.DECAYED): Stage.RECYCLED,
}

# What a CRM reports (crm.feedback `outcome`): its trigger, and the stage it implies.
FEEDBACK_TRIGGERS: dict[str, Trigger] = {
    "accepted": Trigger.SDR_ACCEPTED,
    "qualified": Trigger.AE_CONFIRMED,
    "won": Trigger.WON,
    "rejected": Trigger.REJECTED,
    "lost": Trigger.LOST,
    "disqualified": Trigger.DISQUALIFIED,
}
OUTCOME_STAGES: dict[str, Stage] = {
    "accepted": Stage.SQL,
    "qualified": Stage.SQO,
    "won": Stage.CUSTOMER,
    "rejected": Stage.RECYCLED,
    "lost": Stage.RECYCLED,
    "disqualified": Stage.DISQUALIFIED,
}
# The way to customer, in order; recycled and disqualified are off it.
PATH = (*_EARLY, Stage.MQL, Stage.SQL, Stage.SQO, Stage.CUSTOMER)
_PROGRESS = ("accepted", "qualified", "won")


class IllegalTransition(ValueError):
    """A trigger that does not apply to the lead's stage; the message says both."""

    def __init__(self, stage: Stage, trigger: Trigger) -> None:
        self.stage = stage
        self.trigger = trigger
        allowed = sorted(t.value for (s, t) in LEGAL if s == stage)
        super().__init__(
            f"'{trigger.value}' does not apply to a lead in stage '{stage.value}'"
            f" (allowed there: {', '.join(allowed) or 'nothing'})"
        )


@dataclass(frozen=True)
class Transition:
    """A move. `by_sales`: a CRM reported it; `skipped`: the stages of `PATH` it jumped over."""

    from_stage: Stage
    to_stage: Stage
    trigger: Trigger
    reason: str
    by_sales: bool = False
    skipped: tuple[Stage, ...] = ()


SalesResult = Literal["applied", "unchanged", "superseded", "refused"]


@dataclass(frozen=True)
class SalesDecision:
    """What a CRM outcome does to a lead: `applied` (then `move`), `unchanged` (the lead is
    where the outcome puts it, or further along), `superseded` (a later outcome already
    applies) or `refused` (cannot happen); `detail` says which and why, for the history."""

    result: SalesResult
    detail: str
    move: Transition | None = None


def sales_move(
    stage: Stage, outcome: str, *, reason: str, at: datetime, latest_at: datetime | None
) -> SalesDecision:
    """What the CRM `outcome` reported at `at` does to a lead in `stage` whose latest applied
    (or confirmed) outcome was reported at `latest_at` (None: none yet). See the module doc."""
    target = OUTCOME_STAGES[outcome]
    if latest_at is not None and at < latest_at:
        return SalesDecision(
            "superseded",
            f"'{outcome}' of {at.isoformat()} is older than the outcome of "
            f"{latest_at.isoformat()} that already applies: kept in the history, not applied",
        )
    if stage == Stage.CUSTOMER:
        if outcome == "won":
            return SalesDecision("unchanged", "already a customer")
        return SalesDecision(
            "refused",
            f"'{outcome}' does not apply to a customer: a customer stays a customer (a new "
            "deal is an opportunity in the CRM, not a lead stage)",
        )
    if stage == target:
        return SalesDecision("unchanged", f"already {stage.value}")
    if outcome in _PROGRESS and stage in PATH and PATH.index(stage) > PATH.index(target):
        return SalesDecision("unchanged", f"already past {target.value} ({stage.value})")
    move = Transition(
        stage,
        target,
        FEEDBACK_TRIGGERS[outcome],
        reason,
        by_sales=True,
        skipped=_skipped(stage, target) if outcome in _PROGRESS else (),
    )
    return SalesDecision("applied", f"{stage.value} -> {target.value}", move)


def _skipped(stage: Stage, target: Stage) -> tuple[Stage, ...]:
    """The stages of `PATH` between `stage` and `target` that the lead did not pass: after
    `stage` on the path, or from mql on for a lead off it (recycled or disqualified: it comes
    back to sales without qualifying again)."""
    start = PATH.index(stage) + 1 if stage in PATH else PATH.index(Stage.MQL)
    return PATH[start : PATH.index(target)]


def apply(stage: Stage, trigger: Trigger, reason: str) -> Transition:
    """The move `trigger` makes from `stage`; raises IllegalTransition when there is none."""
    target = LEGAL.get((stage, trigger))
    if target is None:
        raise IllegalTransition(stage, trigger)
    return Transition(stage, target, trigger, reason)


def earned_move(
    stage: Stage, *, identified: bool, engaged: bool, qualifies: bool, why_qualified: str
) -> Transition | None:
    """The furthest forward move the lead's evidence earns now, as one transition (a known lead
    asking for a demo goes to mql at once), or None. Only from anonymous, known, lead and
    recycled: later stages move by sales feedback. Anonymous visitors never qualify: sales cannot
    contact them.
    """
    if stage not in (*_EARLY, Stage.RECYCLED) or not identified:
        return None
    if qualifies:
        return apply(stage, Trigger.QUALIFIED, why_qualified)
    if engaged and (stage, Trigger.ENGAGED) in LEGAL:
        return apply(stage, Trigger.ENGAGED, "engaged after identification")
    if (stage, Trigger.IDENTIFIED) in LEGAL:
        return apply(stage, Trigger.IDENTIFIED, "identified")
    return None


def unmerged_move(stage: Stage, earned: Stage, reason: str) -> Transition | None:
    """After an unmerge: the move from `stage` to `earned`, the stage the lead's own messages
    earn (`rescoring.earned_stage`), when the lead is in a marketing stage and they differ.
    Sales stages stay: they are what the CRM reported about this person."""
    if stage not in MARKETING_STAGES or earned == stage:
        return None
    return Transition(stage, earned, Trigger.UNMERGED, reason)
