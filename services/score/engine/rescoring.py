"""Scoring a lead's stored history again, under the live rule set or a candidate one.

A lead's history is every enriched message score received for it (its facts, time and id), in
order. Replaying it through `score_event` from an empty state gives the ledger and score that a
rule set would have produced, which is what both a simulation ("what would change?") and an
applied rule change need. Pure: the caller streams leads from the database in batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.score.engine.conditions import Facts
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import Evaluation, ScoreCard, ScoreState, evaluate, score_event
from shared.contracts import Stage


@dataclass(frozen=True)
class HistoryItem:
    message_id: str
    at: datetime
    facts: Facts
    behaviour: bool


@dataclass(frozen=True)
class LeadHistory:
    lead_id: str
    stage: Stage
    identified: bool
    items: Sequence[HistoryItem]


def replay(rules: RuleSet, items: Sequence[HistoryItem]) -> ScoreState:
    """The ledger state `rules` give this history (items in the order they were scored)."""
    state = ScoreState()
    for item in items:
        result: Evaluation = score_event(
            rules,
            state,
            item.facts,
            at=item.at,
            message_id=item.message_id,
            behaviour=item.behaviour,
        )
        state = result.state
    return state


@dataclass(frozen=True)
class LeadDelta:
    lead_id: str
    stage: Stage
    before: ScoreCard
    after: ScoreCard


@dataclass
class SimulationReport:
    """What a candidate rule set would change, as of one time."""

    candidate_version: str
    leads: int = 0
    score_changed: int = 0
    would_become_mql: list[LeadDelta] = field(default_factory=list)
    would_drop_below_mql: list[LeadDelta] = field(default_factory=list)
    grade_changed: int = 0

    @property
    def stage_changes(self) -> int:
        return len(self.would_become_mql) + len(self.would_drop_below_mql)


QUALIFIABLE = (Stage.KNOWN, Stage.LEAD, Stage.RECYCLED)


def simulate(
    live: RuleSet,
    candidate: RuleSet,
    leads: Iterable[LeadHistory],
    *,
    at: datetime,
    into: SimulationReport | None = None,
) -> SimulationReport:
    """Compare the live rules' scores with the candidate's for every lead, as of `at`.

    "Would become MQL": an identified lead in known/lead/recycled that the candidate qualifies.
    "Would drop": an MQL that the candidate no longer qualifies (it would be recycled by the
    decay sweep's rule, not at once). Stages past MQL belong to sales and are not simulated.
    Feed leads in chunks with `into=` to keep one chunk in memory.
    """
    report = into or SimulationReport(candidate_version=candidate.version)
    for lead in leads:
        report.leads += 1
        before = evaluate(live, replay(live, lead.items), at)
        after = evaluate(candidate, replay(candidate, lead.items), at)
        delta = LeadDelta(lead.lead_id, lead.stage, before, after)
        if (before.fit, before.behaviour) != (after.fit, after.behaviour):
            report.score_changed += 1
        if before.grade != after.grade:
            report.grade_changed += 1
        if lead.identified and lead.stage in QUALIFIABLE and after.qualifies_as_mql:
            report.would_become_mql.append(delta)
        elif lead.stage == Stage.MQL and not after.qualifies_as_mql:
            report.would_drop_below_mql.append(delta)
    return report
