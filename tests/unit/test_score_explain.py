"""`explain`: the ledger rule by rule, valued now, adding up to the score; stage history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.score.engine.explain import StageLine, explain, render_text
from services.score.engine.ruleset import load_rules
from services.score.engine.scoring import LedgerLine

RULES = load_rules(Path(__file__).resolve().parents[2] / "services/score/rules/default.yaml")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def line(
    rule_id: str, group: str, kind: str, points: int, at: datetime, message: str
) -> LedgerLine:
    return LedgerLine(
        message_id=message,
        rule_id=rule_id,
        group=group,
        kind=kind,
        points=points,
        requested=points,
        reason=f"because {rule_id}",
        note="",
        rule_version="2026.11-2",
        event_time=at,
    )


LEDGER = [
    line("vp", "persona", "fit", 25, T0, "m1"),
    line("mid-size-company", "company", "fit", 15, T0, "m1"),
    line("demo-request", "intent", "behaviour", 60, T0, "m2"),
    line("pricing-page", "intent", "behaviour", 15, T0 + timedelta(days=1), "m3"),
    line("pricing-page", "intent", "behaviour", 15, T0 + timedelta(days=2), "m4"),
    line("vp", "persona", "fit", -25, T0 + timedelta(days=3), "m5"),  # title changed
    line("director", "persona", "fit", 20, T0 + timedelta(days=3), "m5"),
]
STAGES = [
    StageLine(from_stage="anonymous", to_stage="known", reason="identified", at=T0),
    StageLine(from_stage="known", to_stage="mql", reason="A1", at=T0 + timedelta(hours=1)),
]


def test_total_is_the_sum_of_the_lines_valued_now() -> None:
    at = T0 + timedelta(days=30)
    explained = explain(
        lead_id="lead-1",
        email="maria@northwind.io",
        stage="mql",
        ledger=LEDGER,
        stages=STAGES,
        rules=RULES,
        at=at,
    )
    assert explained.score.fit == 35
    assert explained.score.total == round(sum(line.value_now for line in explained.lines))
    demo = next(line for line in explained.lines if line.rule_id == "demo-request")
    assert demo.value_now == 30.0  # one half-life of 30 days


def test_by_rule_counts_and_orders_by_weight() -> None:
    explained = explain(
        lead_id="lead-1",
        email=None,
        stage="mql",
        ledger=LEDGER,
        stages=STAGES,
        rules=RULES,
        at=T0 + timedelta(days=3),
    )
    by_rule = {rule.rule_id: rule for rule in explained.by_rule}
    assert by_rule["pricing-page"].times == 2
    assert by_rule["pricing-page"].points == 30
    assert by_rule["vp"].times == 0  # no longer holds
    assert by_rule["vp"].points == 0
    assert by_rule["director"].times == 1
    assert explained.by_rule[0].rule_id == "demo-request"


def test_stage_history_gives_time_in_stage() -> None:
    explained = explain(
        lead_id="lead-1",
        email=None,
        stage="mql",
        ledger=LEDGER,
        stages=STAGES,
        rules=RULES,
        at=T0 + timedelta(days=2, hours=1),
    )
    assert [(s.stage, s.days) for s in explained.stages] == [("known", 0.04), ("mql", 2.0)]
    assert explained.stages[-1].until is None


def test_text_shows_score_rules_ledger_and_stages() -> None:
    text = render_text(
        explain(
            lead_id="lead-1",
            email="maria@northwind.io",
            stage="mql",
            ledger=LEDGER,
            stages=STAGES,
            rules=RULES,
            at=T0,
        )
    )
    assert "lead lead-1 <maria@northwind.io>" in text
    assert "score " in text
    assert "demo-request" in text
    assert "because demo-request" in text
    assert "mql" in text.split("stages:")[1]
