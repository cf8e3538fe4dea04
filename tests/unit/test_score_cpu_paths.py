"""The per-event shortcuts of score's hot path give the numbers and outputs of the plain
computation: awards valued in one loop, output parts shared between outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.engine.scoring import (
    Award,
    LedgerLine,
    ScoreCard,
    decayed_value,
    decayed_values,
)
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
from shared.contracts import Contribution, Score

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rules() -> RuleSet:
    return RuleSet.model_validate(
        {
            "version": "t-1",
            "grades": {"A": 40, "B": 25, "C": 10},
            "bands": {"1": 60, "2": 30, "3": 10},
            "mql": {"min_total": 60},
            "groups": [
                {"id": "intent", "kind": "behaviour", "decay": {"half_life_days": 10}},
                {"id": "engagement", "kind": "behaviour", "decay": {"linear_days": 20}},
                {"id": "signals", "kind": "behaviour"},
            ],
            "rules": [
                {"id": "demo", "group": "intent", "points": 30, "reason": "demo",
                 "when": {"field": "event", "equals": "Demo Requested"}},
            ],
        }
    )  # fmt: skip


def test_decayed_values_are_decayed_value_of_each_award_in_order() -> None:
    ruleset = rules()
    awards = [
        Award("demo", "intent", 30, T0 - timedelta(days=7), "m1"),  # half-life
        Award("open", "engagement", 5, T0 - timedelta(days=25), "m2"),  # linear, past zero
        Award("open", "engagement", 5, T0 - timedelta(days=3), "m3"),  # linear
        Award("unsub", "signals", -20, T0 - timedelta(days=90), "m4"),  # no decay
        Award("gone", "removed-group", 7, T0 - timedelta(days=9), "m5"),  # group no longer
        Award("later", "intent", 10, T0 + timedelta(days=1), "m6"),  # after `at`: full value
    ]
    values = decayed_values(ruleset, awards, T0)
    assert values == [decayed_value(ruleset, award, T0) for award in awards]
    assert (values[1], values[3], values[4], values[5]) == (0.0, -20.0, 7.0, 10.0)
    assert 0 < values[0] < 30
    assert 0 < values[2] < 5


def test_output_parts_are_built_once_and_equal_to_fresh_ones() -> None:
    handler = ScoreHandler(pinned(load_rules(DEFAULT_RULES_FILE)))

    def line(points: int, reason: str, *, message_id: str = "m1") -> LedgerLine:
        return LedgerLine(message_id, "demo", "intent", "behaviour", points, 30, reason, "",
                          "v1", T0)  # fmt: skip

    first = handler._contribution(line(30, "asked for a demo"))
    assert first == Contribution(rule_id="demo", points=30, reason="asked for a demo")
    assert handler._contribution(line(30, "asked for a demo", message_id="m2")) is first
    capped = handler._contribution(line(5, "asked"))
    assert (capped.points, capped.reason) == (5, "asked")
    card = ScoreCard(40, 25, 65, "B", 2, "B2", True, {})
    score = handler._score_of(card)
    assert score == Score(fit=40, behaviour=25, total=65, grade="B", band=2, priority="B2")
    assert handler._score_of(ScoreCard(40, 25, 65, "B", 2, "B2", True, {"x": 1.0})) is score
    assert handler._score_of(ScoreCard(40, 26, 66, "B", 2, "B2", True, {})).behaviour == 26
