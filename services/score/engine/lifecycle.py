"""The lifecycle state machine: which stage a trigger moves a lead to, and which moves are
refused. Pure: no I/O; the caller records, publishes and logs.

Forward by evidence: identified (anonymous -> known), engaged (-> lead), qualified by score
(-> mql, also from recycled: a recycled lead that earns it again re-qualifies). Forward by sales,
from CRM feedback: accepted by an SDR (mql -> sql), confirmed by an AE (sql -> sqo), won
(-> customer). Backward only with a reason: rejected by sales or lost (-> recycled), decayed below
the nurture line for long enough (mql -> recycled), disqualified (any open stage ->
disqualified). A move not in the table is illegal: refused, never applied. One correction
outside the table: after an unmerge, a lead in a marketing stage (anonymous, known, lead, mql)
goes to the stage its own messages earn, back or forward (`unmerged_move`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
_OPEN = (*_EARLY, Stage.MQL, Stage.SQL, Stage.SQO, Stage.RECYCLED)

LEGAL: dict[tuple[Stage, Trigger], Stage] = {
    (Stage.ANONYMOUS, Trigger.IDENTIFIED): Stage.KNOWN,
    **{(stage, Trigger.ENGAGED): Stage.LEAD for stage in (Stage.ANONYMOUS, Stage.KNOWN)},
    **{(stage, Trigger.QUALIFIED): Stage.MQL for stage in (*_EARLY, Stage.RECYCLED)},
    (Stage.MQL, Trigger.SDR_ACCEPTED): Stage.SQL,
    (Stage.SQL, Trigger.AE_CONFIRMED): Stage.SQO,
    (Stage.SQL, Trigger.WON): Stage.CUSTOMER,
    (Stage.SQO, Trigger.WON): Stage.CUSTOMER,
    (Stage.MQL, Trigger.REJECTED): Stage.RECYCLED,
    (Stage.SQL, Trigger.REJECTED): Stage.RECYCLED,
    (Stage.SQL, Trigger.LOST): Stage.RECYCLED,
    (Stage.SQO, Trigger.LOST): Stage.RECYCLED,
    (Stage.MQL, Trigger.DECAYED): Stage.RECYCLED,
    **{(stage, Trigger.DISQUALIFIED): Stage.DISQUALIFIED for stage in _OPEN},
}

# What a CRM reports (crm.feedback `outcome`) as a trigger.
FEEDBACK_TRIGGERS: dict[str, Trigger] = {
    "accepted": Trigger.SDR_ACCEPTED,
    "qualified": Trigger.AE_CONFIRMED,
    "won": Trigger.WON,
    "rejected": Trigger.REJECTED,
    "lost": Trigger.LOST,
    "disqualified": Trigger.DISQUALIFIED,
}


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
    from_stage: Stage
    to_stage: Stage
    trigger: Trigger
    reason: str


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
