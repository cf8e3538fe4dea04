"""Speed-to-lead and SLA outcomes per rep, kept incrementally from the routing decisions and
what CRMs report. Pure: the handler loads a batch's leads' decisions, applies the batch's
messages to them in order, and stores the rows that changed and the counters (`SpeedTally`).

Measures (milliseconds, `histograms` buckets), by the day of the decision, team and rep:
- `decision`: from ingest receiving the triggering event to the SDR decision (the contract's
  `speed_to_lead_ms`), for the first decision of each lead's move to a sales stage (an SLA
  reassignment is not a new response);
- `acceptance`: from the triggering event to the first CRM acceptance of the lead's current
  SDR decision.
SLA outcomes of a decision, counted for its rep on the decision's day: `met` (accepted by its
`sla_due_at`), `breached` (accepted late, or replaced on breach), and, for one replaced on
breach, `reassigned` or `escalated` by how the router replaced it.
A decision queued with no owner (`queue`) counts under team "" and rep "queue:<name>"; it waits
in the queue until it is accepted, replaced or its lead moves on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime

from services.console.histograms import bucket_of
from shared.contracts import CrmFeedback, LifecycleChanged, RoutingDecision

REPLACEMENTS = ("sla_reassigned", "sla_escalated")
SLA_OUTCOMES = ("met", "breached", "reassigned", "escalated")

SpeedKey = tuple[date, str, str, str, int]
"""(day, team, rep, measure, bucket)"""
RepDay = tuple[date, str, str]
"""(day, team, rep)"""


@dataclass(frozen=True)
class DecisionRow:
    """A routing decision as the console keeps it: the contract's facts and what became of it."""

    decision_id: str
    lead_id: str
    route: str
    team: str
    rep: str
    rep_name: str | None
    target: str  # the rep's name, the queue or the nurture track: what the timeline shows
    strategy: str | None
    reasons: tuple[str, ...]
    supersedes: str | None
    received_at: datetime
    decided_at: datetime
    sla_due_at: datetime | None
    speed_ms: int
    queued: bool = False
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None

    @property
    def rep_day(self) -> RepDay:
        return (self.decided_at.date(), self.team, self.rep)


@dataclass
class SpeedTally:
    """Counters a batch adds: speed histograms and SLA outcomes."""

    speed: dict[SpeedKey, int] = field(default_factory=dict)
    sla: dict[RepDay, dict[str, int]] = field(default_factory=dict)

    def measure(self, row: DecisionRow, measure: str, ms: float) -> None:
        day, team, rep = row.rep_day
        key = (day, team, rep, measure, bucket_of(ms))
        self.speed[key] = self.speed.get(key, 0) + 1

    def outcome(self, row: DecisionRow, outcome: str) -> None:
        counts = self.sla.setdefault(row.rep_day, dict.fromkeys(SLA_OUTCOMES, 0))
        counts[outcome] += 1


def row_of(decision: RoutingDecision) -> DecisionRow:
    owner = decision.owner
    if owner is not None:
        team, rep, target = owner.team, owner.id, owner.name
    elif decision.queue is not None:
        team, rep, target = "", f"queue:{decision.queue}", f"queue {decision.queue}"
    else:
        team, rep, target = "", "", f"track {decision.track}"
    return DecisionRow(
        decision_id=decision.decision_id,
        lead_id=decision.lead_id,
        route=decision.route,
        team=team,
        rep=rep,
        rep_name=owner.name if owner is not None else None,
        target=target,
        strategy=decision.strategy,
        reasons=tuple(decision.reasons),
        supersedes=decision.supersedes,
        received_at=decision.received_at,
        decided_at=decision.decided_at,
        sla_due_at=decision.sla_due_at,
        speed_ms=decision.speed_to_lead_ms,
        queued=decision.queue is not None,
    )


def on_decision(rows: dict[str, DecisionRow], decision: RoutingDecision, tally: SpeedTally) -> None:
    """Record a decision among its lead's `rows` (decision_id -> row; changed in place). A
    decision already recorded changes nothing. It closes the lead's earlier open decisions (one
    current route per lead); the one it supersedes on an SLA breach is counted as breached and
    reassigned or escalated."""
    if decision.decision_id in rows:
        return
    new = row_of(decision)
    if new.route == "sdr" and new.strategy not in REPLACEMENTS:
        tally.measure(new, "decision", new.speed_ms)
    replaced = rows.get(decision.supersedes) if decision.supersedes else None
    if replaced is not None and replaced.accepted_at is None:
        tally.outcome(replaced, "breached")
        tally.outcome(replaced, "escalated" if new.strategy == "sla_escalated" else "reassigned")
    for row in list(rows.values()):
        if row.closed_at is None and _earlier(row, new):
            reason = (
                "SLA breached: " + (new.strategy or "replaced")
                if row is replaced
                else "replaced by a later decision"
            )
            rows[row.decision_id] = replace(row, closed_at=new.decided_at, closed_reason=reason)
    # A decision read after a later one of its lead (its topic lagged) is replaced already.
    later = [row.decided_at for row in rows.values() if not _earlier(row, new)]
    if later:
        new = replace(new, closed_at=min(later), closed_reason="replaced by a later decision")
    rows[new.decision_id] = new


def on_feedback(rows: dict[str, DecisionRow], feedback: CrmFeedback, tally: SpeedTally) -> None:
    """Apply a CRM's report to its lead's decisions. The first acceptance of the lead's newest
    SDR decision not replaced on breach is its response: measured, and counted as met or
    breached against its SLA. Any outcome closes the lead's open decisions."""
    if feedback.outcome == "accepted":
        current = _current_sdr(rows)
        if current is not None and current.accepted_at is None:
            tally.measure(
                current,
                "acceptance",
                max((feedback.at - current.received_at).total_seconds() * 1000, 0.0),
            )
            due = current.sla_due_at
            tally.outcome(current, "met" if due is None or feedback.at <= due else "breached")
            rows[current.decision_id] = replace(current, accepted_at=feedback.at)
    _close_open(rows, at=feedback.at, reason=f"CRM reported {feedback.outcome}")


def on_stage_change(rows: dict[str, DecisionRow], change: LifecycleChanged) -> None:
    """A lead that changed stage after a decision leaves that decision behind (the router
    closes it the same way)."""
    _close_open(rows, at=change.at, reason=f"lead moved to {change.to_stage.value}")


def _earlier(row: DecisionRow, new: DecisionRow) -> bool:
    """Whether `row` came before `new`. Decisions of one router batch share a time: then a
    nurture decision (for the stage the lead left) comes before an SDR decision (for the sales
    stage it reached), whichever topic the console read first."""
    return (row.decided_at, row.route == "sdr") <= (new.decided_at, new.route == "sdr")


def _current_sdr(rows: dict[str, DecisionRow]) -> DecisionRow | None:
    replaced = {row.supersedes for row in rows.values() if row.supersedes}
    candidates = [
        row for row in rows.values() if row.route == "sdr" and row.decision_id not in replaced
    ]
    return max(candidates, key=lambda row: row.decided_at, default=None)


def _close_open(rows: dict[str, DecisionRow], *, at: datetime, reason: str) -> None:
    for row in list(rows.values()):
        if row.closed_at is None and row.decided_at <= at:
            rows[row.decision_id] = replace(row, closed_at=at, closed_reason=reason)
