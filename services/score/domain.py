"""Scoring and the lifecycle: pure functions, no I/O, no clock.

`score_event(state, event, rules)` gives the contributions an event earns and the lead's new
state; `advance_stage(...)` decides the forward stage move it causes. Both only depend on their
arguments, so a replay of the same events gives the same numbers and the same stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from services.score.rules import Rule, RuleSet
from shared.contracts import FORWARD_ORDER, Contribution, EnrichedEvent, Score, Stage

ENGAGEMENT_TYPES = frozenset({"track", "page", "screen"})


@dataclass(frozen=True)
class LeadState:
    lead_id: str
    stage: Stage = Stage.ANONYMOUS
    fit: int = 0
    behaviour: int = 0
    engaged: bool = False
    fit_rules_awarded: frozenset[str] = field(default_factory=frozenset)

    @property
    def total(self) -> int:
        return self.fit + self.behaviour


@dataclass(frozen=True)
class ScoreChange:
    state: LeadState
    contributions: tuple[Contribution, ...]


def score_event(state: LeadState, event: EnrichedEvent, rules: RuleSet) -> ScoreChange:
    """Apply every rule to one event. Fit rules count once per lead (the profile may only now
    reveal a title); behaviour rules count each time their event happens."""
    earned: list[tuple[Rule, int]] = []
    awarded = set(state.fit_rules_awarded)
    for rule in rules.rules:
        if rule.kind == "fit":
            if rule.id not in awarded and rule.when.holds_for_profile(event.profile):
                awarded.add(rule.id)
                earned.append((rule, rule.points))
        elif rule.when.holds_for_event(event):
            earned.append((rule, rule.points))
    contributions = tuple(
        Contribution(rule_id=rule.id, points=points, reason=rule.reason) for rule, points in earned
    )
    new_state = replace(
        state,
        fit=state.fit + sum(p for r, p in earned if r.kind == "fit"),
        behaviour=state.behaviour + sum(p for r, p in earned if r.kind == "behaviour"),
        fit_rules_awarded=frozenset(awarded),
        engaged=state.engaged or event.type in ENGAGEMENT_TYPES,
    )
    return ScoreChange(state=new_state, contributions=contributions)


def score_of(state: LeadState, rules: RuleSet) -> Score:
    return Score(
        fit=state.fit,
        behaviour=state.behaviour,
        total=state.total,
        grade=rules.grades.grade(state.fit),
    )


@dataclass(frozen=True)
class StageMove:
    from_stage: Stage
    to_stage: Stage
    reason: str


def advance_stage(
    stage: Stage, *, identified: bool, engaged: bool, total: int, rules: RuleSet
) -> StageMove | None:
    """The furthest forward stage the lead has now earned, or None if it stays.

    anonymous -> known: identified (decided by enrich). known -> lead: engaged (a track, page
    or screen event, before or after identification). -> mql: total score at or above the threshold.
    Stages beyond mql come from CRM feedback, and backward moves only with a reason: neither
    happens here. A lead can skip stages (a known lead asking for a demo becomes an MQL at once).
    """
    if stage not in FORWARD_ORDER or FORWARD_ORDER.index(stage) >= FORWARD_ORDER.index(Stage.MQL):
        return None
    target, reason = stage, ""
    if identified and _before(target, Stage.KNOWN):
        target, reason = Stage.KNOWN, "identified"
    if identified and engaged and _before(target, Stage.LEAD):
        target, reason = Stage.LEAD, "engaged after identification"
    if identified and total >= rules.thresholds.mql_total and _before(target, Stage.MQL):
        target, reason = (
            Stage.MQL,
            f"total score {total} >= MQL threshold {rules.thresholds.mql_total}",
        )
    return None if target == stage else StageMove(stage, target, reason)


def _before(stage: Stage, other: Stage) -> bool:
    return FORWARD_ORDER.index(stage) < FORWARD_ORDER.index(other)
