"""One lead's training example from its stored history (`lead_example`). Pure.

The lead's messages before the cut-off are replayed, in the order they were scored, through
the same steps the live path takes for each message (`Activity.observe`, the running rules'
`replayed`), and its features are taken at the cut-off (`features.features_of`). A message at
or after the cut-off changes nothing: that is the guarantee against leakage, and
tests/unit/test_learning_features.py holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from services.score.engine.conditions import PROFILE_PREFIXES
from services.score.engine.rescoring import HistoryItem, replayed
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import ScoreState, evaluate
from services.score.learning.activity import Activity, kind_of
from services.score.learning.features import SECONDS_PER_DAY, features_of
from services.score.learning.outcomes import (
    Labelled,
    OutcomePolicy,
    SalesOutcome,
    Unlabelled,
    label,
)


@dataclass(frozen=True)
class Example:
    features: dict[str, float]
    label: Labelled
    rules_total: float  # the running rules' total score at the cut-off


def keep_seconds(windows_days: Sequence[float]) -> float:
    """How long an activity keeps occurrence times: the longest window."""
    return max(windows_days, default=0.0) * SECONDS_PER_DAY


def lead_example(
    *,
    items: Sequence[HistoryItem],
    outcomes: Sequence[SalesOutcome],
    mql_at: datetime | None,
    rules: RuleSet,
    policy: OutcomePolicy,
    windows_days: tuple[float, ...],
    now: datetime,
    covered_kinds: set[str] | None = None,
) -> Example | Unlabelled:
    """The lead's example, or why it has none. `covered_kinds`, when given, collects the
    behaviour kinds a rule counted for (the facts a rule already reads, for proposals)."""
    if not items:
        return Unlabelled("nothing before the cut-off")
    verdict = label(
        first_seen=min(item.at for item in items),
        mql_at=mql_at,
        outcomes=outcomes,
        policy=policy,
        now=now,
    )
    if isinstance(verdict, Unlabelled):
        return verdict
    cutoff = verdict.cutoff
    before = [
        item for item in items if item.at < cutoff or (verdict.inclusive and item.at == cutoff)
    ]
    activity = Activity()
    state = ScoreState()
    picture: dict[str, object] = {}
    keep_s = keep_seconds(windows_days)
    for item, result in zip(before, replayed(rules, before), strict=True):
        activity.observe(item.facts, at=item.at, behaviour=item.behaviour, keep_s=keep_s)
        state = result.state
        if item.profile:
            picture = {k: v for k, v in item.facts.items() if k.startswith(PROFILE_PREFIXES)}
        counted = any(line.kind == "behaviour" for line in result.lines)
        if covered_kinds is not None and item.behaviour and counted:
            kind = kind_of(item.facts)
            if kind is not None:
                covered_kinds.add(kind)
    card = evaluate(rules, state, verdict.cutoff)
    features = features_of(
        activity, picture, card=card, state=state, at=verdict.cutoff, windows_days=windows_days
    )
    return Example(features, verdict, card.total)
