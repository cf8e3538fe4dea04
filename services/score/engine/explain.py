"""Why a lead has its score: the ledger, rule by rule, valued at a given time, its stage
history with time in each stage, and what happened to its identity (merges, unmerges,
identities a guardrail did not link). Pure: the caller reads the rows; the CLI and the HTTP endpoint
render the same `Explanation`.

The explanation's total is computed from the ledger lines it shows, so "the total equals the
ledger sum" is visible to the reader, not only asserted by the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from services.score.engine.conditions import Facts
from services.score.engine.rescoring import HistoryItem
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import (
    Award,
    LedgerLine,
    ScoreState,
    decayed_value,
    evaluate,
)
from shared.contracts import Likelihood, Score


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class StageLine(_Frozen):
    from_stage: str
    to_stage: str
    reason: str
    at: datetime
    by_sales: bool = False
    skipped: list[str] = []


class ExplainedLine(_Frozen):
    rule_id: str
    group: str
    kind: str
    reason: str
    points: int
    value_now: float
    event_time: datetime
    message_id: str
    rule_version: str
    note: str


class RuleSummary(_Frozen):
    rule_id: str
    kind: str
    reason: str
    times: int
    points: int
    value_now: float


class IdentityLine(_Frozen):
    """What happened to the lead's identity (merged, unmerged, an identity not linked)."""

    at: datetime
    what: str
    detail: str
    other_lead_id: str | None = None


class SalesLine(_Frozen):
    """An outcome a CRM reported, and what it did (`lifecycle.SalesDecision`)."""

    at: datetime
    outcome: str
    result: str
    detail: str


class StageStay(_Frozen):
    stage: str
    since: datetime
    until: datetime | None
    days: float
    reason: str
    by_sales: bool = False
    skipped: list[str] = []


class EventLine(_Frozen):
    """An event score received for the lead, as it was received (its call, in a few words)."""

    at: datetime
    message_id: str
    what: str


MAX_EVENT_LINES = 500
"""Events an explanation lists (the newest); the ledger lists every line that counts."""


def event_lines(items: Iterable[HistoryItem]) -> list[EventLine]:
    """The lead's received events, oldest first, at most the newest `MAX_EVENT_LINES`."""
    lines = [EventLine(at=item.at, message_id=item.message_id, what=_what(item.facts))
             for item in items]  # fmt: skip
    lines.sort(key=lambda line: (line.at, line.message_id))
    return lines[-MAX_EVENT_LINES:]


def _what(facts: Facts) -> str:
    call = str(facts.get("type") or "call")
    if call == "track" and facts.get("event"):
        return f'track "{facts["event"]}"'
    if call in ("page", "screen"):
        where = facts.get("page.path") or facts.get("name")
        return f"{call} {where}" if where else call
    return call


class Explanation(_Frozen):
    """Why a lead has its score as of `as_of`: the score as every topic carries it (`Score`),
    each rule's share, the ledger line by line, and the stages it went through."""

    lead_id: str
    email: str | None
    stage: str
    as_of: datetime
    rule_version: str
    score: Score
    qualifies_as_mql: bool
    by_rule: list[RuleSummary]
    lines: list[ExplainedLine]
    stages: list[StageStay]
    identity: list[IdentityLine] = []
    sales: list[SalesLine] = []
    likelihood: Likelihood | None = None
    events: list[EventLine] = []


def explain(
    *,
    lead_id: str,
    email: str | None,
    stage: str,
    ledger: Sequence[LedgerLine],
    stages: Sequence[StageLine],
    rules: RuleSet,
    at: datetime,
    identity: Sequence[IdentityLine] = (),
    sales: Sequence[SalesLine] = (),
    likelihood: Likelihood | None = None,
    events: Sequence[EventLine] = (),
) -> Explanation:
    state = state_of(ledger)
    card = evaluate(rules, state, at)
    lines = [
        ExplainedLine(
            rule_id=line.rule_id,
            group=line.group,
            kind=line.kind,
            reason=line.reason,
            points=line.points,
            value_now=round(_value(rules, line, at), 2),
            event_time=line.event_time,
            message_id=line.message_id,
            rule_version=line.rule_version,
            note=line.note,
        )
        for line in _in_ledger_order(ledger)
    ]
    return Explanation(
        lead_id=lead_id,
        email=email,
        stage=stage,
        as_of=at,
        rule_version=rules.version,
        score=Score(
            fit=card.fit,
            behaviour=card.behaviour,
            total=card.total,
            grade=card.grade,
            band=card.band,
            priority=card.priority,
        ),
        qualifies_as_mql=rules.mql.qualifies(
            card.qualifies_as_mql, likelihood.probability if likelihood is not None else None
        ),
        by_rule=_by_rule(lines),
        lines=lines,
        stages=_stays(stages, at),
        identity=sorted(identity, key=lambda line: line.at),
        sales=sorted(sales, key=lambda line: line.at),
        likelihood=likelihood,
        events=list(events),
    )


def state_of(ledger: Sequence[LedgerLine]) -> ScoreState:
    """The engine's state from a lead's ledger lines (fit lines add up per rule)."""
    return state_of_rows(
        (line.kind, line.rule_id, line.group, line.points, line.event_time, line.message_id)
        for line in _in_ledger_order(ledger)
    )


def _in_ledger_order(ledger: Sequence[LedgerLine]) -> list[LedgerLine]:
    """By event time, then message, then rule: the order of the ledger's awards in a state."""
    return sorted(ledger, key=lambda line: (line.event_time, line.message_id, line.rule_id))


LedgerRow = tuple[str, str, str, int, datetime, str]
"""(kind, rule_id, group, points, event_time, message_id) of a stored ledger row."""


def state_of_rows(rows: Iterable[LedgerRow]) -> ScoreState:
    """`state_of` from bare rows already in ledger order (event time, message, rule): what the
    consumer reads on its hot path, without a `LedgerLine` per row."""
    fit: dict[str, int] = {}
    awards: list[Award] = []
    for kind, rule_id, group, points, event_time, message_id in rows:
        if kind == "fit":
            fit[rule_id] = fit.get(rule_id, 0) + points
        else:
            awards.append(Award(rule_id, group, points, event_time, message_id))
    return ScoreState(awards=tuple(awards), fit={k: v for k, v in fit.items() if v != 0})


def render_text(explanation: Explanation) -> str:
    """The CLI's view: the score, then each rule's share, then the stage history."""
    e = explanation
    out = [
        f"lead {e.lead_id}" + (f" <{e.email}>" if e.email else ""),
        f"stage {e.stage}; priority {e.score.priority} (grade {e.score.grade}, band"
        f" {e.score.band}); {'qualifies' if e.qualifies_as_mql else 'does not qualify'} as MQL",
        f"score {e.score.total} = fit {e.score.fit} + behaviour {e.score.behaviour}"
        f" (as of {e.as_of:%Y-%m-%d %H:%M} UTC, rules {e.rule_version})",
        "",
        f"{'rule':<26}{'kind':<11}{'times':>5}{'points':>8}{'now':>9}  reason",
    ]
    for rule in e.by_rule:
        out.append(
            f"{rule.rule_id:<26}{rule.kind:<11}{rule.times:>5}{rule.points:>8}"
            f"{rule.value_now:>9.1f}  {rule.reason}"
        )
    out += ["", "ledger:"]
    for line in e.lines:
        note = f" [{line.note}]" if line.note else ""
        out.append(
            f"  {line.event_time:%Y-%m-%d %H:%M}  {line.rule_id:<24}{line.points:>5}"
            f" -> {line.value_now:>6.1f}  {line.message_id}{note}"
        )
    out += ["", "stages:"]
    for stay in e.stages:
        until = f"{stay.until:%Y-%m-%d %H:%M}" if stay.until else "now"
        by = "; by sales" if stay.by_sales else ""
        skipped = f"; skipped {', '.join(stay.skipped)}" if stay.skipped else ""
        out.append(
            f"  {stay.stage:<13}{stay.since:%Y-%m-%d %H:%M} .. {until:<16}"
            f"{stay.days:>7.1f} days  ({stay.reason}{by}{skipped})"
        )
    if e.identity:
        out += ["", "identity:"]
        out += [f"  {line.at:%Y-%m-%d %H:%M}  {line.what:<12}{line.detail}" for line in e.identity]
    if e.likelihood is not None:
        lk = e.likelihood
        out += [
            "",
            f"likelihood to convert within {lk.horizon_days:g} days: {lk.probability:.0%} "
            f"(model {lk.model_version})",
        ]
        out += [f"  + {f.description} ({f.effect:+.2f})" for f in lk.up]
        out += [f"  - {f.description} ({f.effect:+.2f})" for f in lk.down]
    if e.sales:
        out += ["", "what sales reported:"]
        out += [
            f"  {line.at:%Y-%m-%d %H:%M}  {line.outcome:<13}{line.result:<11}{line.detail}"
            for line in e.sales
        ]
    return "\n".join(out)


def _value(rules: RuleSet, line: LedgerLine, at: datetime) -> float:
    if line.kind == "fit":
        return float(line.points)
    award = Award(line.rule_id, line.group, line.points, line.event_time, "")
    return decayed_value(rules, award, at)


def _by_rule(lines: Sequence[ExplainedLine]) -> list[RuleSummary]:
    """Per rule: how often it counted (a fit rule counts once while it holds), its points
    and their value now."""
    grouped: dict[str, list[ExplainedLine]] = {}
    for line in lines:
        grouped.setdefault(line.rule_id, []).append(line)
    summary = []
    for rule_id, rows in grouped.items():
        points = sum(row.points for row in rows)
        fit = rows[0].kind == "fit"
        summary.append(
            RuleSummary(
                rule_id=rule_id,
                kind=rows[0].kind,
                reason=rows[0].reason,
                times=(1 if points != 0 else 0) if fit else len(rows),
                points=points,
                value_now=round(sum(row.value_now for row in rows), 2),
            )
        )
    return sorted(summary, key=lambda s: (-abs(s.value_now), s.rule_id))


def _stays(stages: Sequence[StageLine], at: datetime) -> list[StageStay]:
    ordered = sorted(stages, key=lambda s: s.at)
    stays = []
    for index, change in enumerate(ordered):
        until = ordered[index + 1].at if index + 1 < len(ordered) else None
        end = until or at
        stays.append(
            StageStay(
                stage=change.to_stage,
                since=change.at,
                until=until,
                days=round(max((end - change.at).total_seconds(), 0) / 86_400, 2),
                reason=change.reason,
                by_sales=change.by_sales,
                skipped=change.skipped,
            )
        )
    return stays
