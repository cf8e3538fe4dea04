"""A lead's story on one timeline: what the console holds (stage changes, routing decisions and
what became of them, CRM reports) and what score explains (events as received, the rules each
one triggered, identity merges). Pure.

Points are shown as score values them now (`value_now`: a behaviour's points decay), so the
points on the timeline add up to the score score gives (`Ledger.total`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from services.console.queries import LeadStory
from services.console.score_client import LedgerLine, ScoreExplanation


@dataclass(frozen=True)
class Points:
    rule_id: str
    reason: str
    kind: str  # fit or behaviour
    points: int  # as awarded
    value_now: float  # as it counts now (decayed)


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str  # event, stage, decision, closed, sla, crm, identity
    title: str
    detail: str = ""
    points: tuple[Points, ...] = field(default=())


@dataclass(frozen=True)
class Ledger:
    """score's ledger: every line, the sum the timeline shows, and score's own total."""

    lines: tuple[Points, ...]
    shown_sum: float
    total: int


def ledger_of(explanation: ScoreExplanation) -> Ledger:
    lines = tuple(_points(line) for line in explanation.lines)
    return Ledger(
        lines=lines,
        shown_sum=round(sum(line.value_now for line in lines), 2),
        total=explanation.score.total,
    )


def timeline_of(story: LeadStory, explanation: ScoreExplanation | None) -> list[Entry]:
    """Every entry of the lead's story, oldest first (ties: the order listed in the module)."""
    entries: list[Entry] = []
    if explanation is not None:
        entries += _events(explanation)
        entries += [
            Entry(at=line.at, kind="identity", title=line.what, detail=line.detail)
            for line in explanation.identity
        ]
    for change in story.stage_changes:
        skipped = f" (skipped {', '.join(change['skipped'])})" if change["skipped"] else ""
        entries.append(
            Entry(
                at=change["at"],
                kind="stage",
                title=f"{change['from_stage']} → {change['to_stage']}{skipped}",
                detail=change["reason"] + (" (reported by sales)" if change["by_sales"] else ""),
            )
        )
    for decision in story.decisions:
        how = f" by {decision.strategy.replace('_', ' ')}" if decision.strategy else ""
        entries.append(
            Entry(
                at=decision.decided_at,
                kind="decision",
                title=f"routed to {decision.route}: {decision.target}{how}",
                detail="; ".join(decision.reasons),
            )
        )
        if decision.accepted_at is not None:
            due = decision.sla_due_at
            met = "SLA met" if due is None or decision.accepted_at <= due else "SLA breached"
            entries.append(
                Entry(
                    at=decision.accepted_at,
                    kind="sla",
                    title=f"accepted by {decision.target}",
                    detail=met,
                )
            )
        elif decision.closed_at is not None:
            entries.append(
                Entry(
                    at=decision.closed_at,
                    kind="closed",
                    title=f"decision for {decision.target} no longer holds",
                    detail=decision.closed_reason or "",
                )
            )
    for report in story.feedback:
        entries.append(
            Entry(
                at=report["at"],
                kind="crm",
                title=f"CRM reported {report['outcome']}",
                detail=report["reason"] or "",
            )
        )
    order = {kind: i for i, kind in enumerate(_KIND_ORDER)}
    return sorted(entries, key=lambda entry: (entry.at, order.get(entry.kind, 99)))


_KIND_ORDER = ("event", "identity", "stage", "decision", "sla", "closed", "crm")


def _events(explanation: ScoreExplanation) -> list[Entry]:
    """One entry per event score received, with the rules it triggered; an event score listed
    no line for (older than what score lists) still appears through its rule lines."""
    by_message: dict[str, list[Points]] = defaultdict(list)
    first_seen: dict[str, datetime] = {}
    for line in explanation.lines:
        by_message[line.message_id].append(_points(line))
        first_seen.setdefault(line.message_id, line.event_time)
    entries = []
    for event in explanation.events:
        entries.append(
            Entry(
                at=event.at,
                kind="event",
                title=event.what,
                points=tuple(by_message.pop(event.message_id, ())),
            )
        )
    for message_id, points in by_message.items():
        entries.append(
            Entry(
                at=first_seen[message_id],
                kind="event",
                title="scored event" if points[0].kind != "fit" else "profile",
                points=tuple(points),
            )
        )
    return entries


def _points(line: LedgerLine) -> Points:
    return Points(
        rule_id=line.rule_id,
        reason=line.reason,
        kind=line.kind,
        points=line.points,
        value_now=line.value_now,
    )
