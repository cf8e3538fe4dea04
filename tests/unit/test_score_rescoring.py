"""Replaying history under a rule set, and simulating a candidate rule set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.score.engine.conditions import facts_of
from services.score.engine.rescoring import HistoryItem, LeadHistory, replay, simulate
from services.score.engine.ruleset import RuleSet, load_rules
from services.score.engine.scoring import ScoreState, evaluate, score_event
from shared.contracts import Stage
from tests.unit.builders import enriched_event

LIVE = load_rules(Path(__file__).resolve().parents[2] / "services/score/rules/default.yaml")
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
VP = {
    "profile": {"email": "m@northwind.io", "seniority": "vp", "job_function": "sales"},
    "firmographics": {"domain": "northwind.io", "employee_count": 850, "industry": "Software"},
}


def item(n: int, **call: Any) -> HistoryItem:
    event = enriched_event(message_id=f"m{n}", identified=True, **{**VP, **call})
    return HistoryItem(
        f"m{n}", T0 + timedelta(hours=n), facts_of(event), call.get("type") != "identify"
    )


def test_replay_equals_live_scoring() -> None:
    items = [
        item(0, type="identify"),
        item(1, type="page", properties={"path": "/pricing"}),
        item(2, type="track", event="Webinar Attended"),
    ]
    state = ScoreState()
    for it in items:
        state = score_event(
            LIVE, state, it.facts, at=it.at, message_id=it.message_id, behaviour=it.behaviour
        ).state
    at = T0 + timedelta(days=1)
    assert evaluate(LIVE, replay(LIVE, items), at) == evaluate(LIVE, state, at)


def test_simulation_names_leads_that_would_qualify_and_drop() -> None:
    webinar = LeadHistory(
        "webinar-lead",
        Stage.LEAD,
        True,
        [item(0, type="identify"), item(1, type="track", event="Webinar Attended")],
    )
    demo = LeadHistory(
        "demo-mql",
        Stage.MQL,
        True,
        [item(0, type="identify"), item(1, type="track", event="Demo Requested")],
    )
    anonymous = LeadHistory(
        "anon", Stage.ANONYMOUS, False, [item(1, type="track", event="Webinar Attended")]
    )
    # candidate: a lower behaviour bar and a demo worth much less
    document = LIVE.model_dump(by_alias=True)
    document["version"] = "candidate"
    document["mql"].update(min_behaviour=15, min_total=60)
    for rule in document["rules"]:
        if rule["id"] == "demo-request":
            rule["points"] = 5
    rules = RuleSet.model_validate(document)
    report = simulate(LIVE, rules, [webinar, demo, anonymous], at=T0 + timedelta(days=1))
    assert report.leads == 3
    assert [d.lead_id for d in report.would_become_mql] == ["webinar-lead"]
    assert [d.lead_id for d in report.would_drop_below_mql] == ["demo-mql"]
    assert report.score_changed == 1  # only the demo's points changed
    assert report.stage_changes == 2


def test_same_rules_change_nothing() -> None:
    demo = LeadHistory(
        "demo-mql",
        Stage.MQL,
        True,
        [item(0, type="identify"), item(1, type="track", event="Demo Requested")],
    )
    report = simulate(LIVE, LIVE, [demo], at=T0 + timedelta(days=1))
    assert (report.score_changed, report.stage_changes, report.grade_changed) == (0, 0, 0)
