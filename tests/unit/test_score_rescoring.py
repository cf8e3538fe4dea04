"""Replaying history under a rule set, and simulating a candidate rule set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.score.engine.conditions import facts_of
from services.score.engine.rescoring import (
    HistoryItem,
    LeadHistory,
    earned_stage,
    render_summary,
    replay,
    simulate,
    summarise,
)
from services.score.engine.ruleset import MqlThresholds, RuleSet, load_rules
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
        email="wendy@initech.com",
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
    at = T0 + timedelta(days=1)
    report = simulate(LIVE, rules, [webinar, demo, anonymous], at=at)
    assert report.leads == 3
    assert [d.lead_id for d in report.would_become_mql] == ["webinar-lead"]
    assert [d.lead_id for d in report.would_drop_below_mql] == ["demo-mql"]
    assert report.score_changed == 1  # only the demo's points changed
    assert report.stage_changes == 2

    # the CLI's and the endpoint's view of it
    summary = summarise(report, live_version=LIVE.version, at=at, listed=1)
    assert (summary.leads, summary.would_become_mql, summary.would_drop_below_mql) == (3, 1, 1)
    dropping = summary.dropping_below_mql[0]
    assert (dropping.lead_id, dropping.before.qualifies_as_mql) == ("demo-mql", True)
    assert dropping.after.total < dropping.before.total
    text = render_summary(summary)
    assert f"rules {LIVE.version} -> candidate: 3 leads" in text
    assert "would become MQL:       1" in text
    assert "wendy@initech.com <webinar-lead> (lead)" in text  # people know leads by email
    before, after = dropping.before, dropping.after
    assert (
        f"    demo-mql {before.priority} {before.total} -> {after.priority} {after.total}" in text
    )


def test_same_rules_change_nothing() -> None:
    demo = LeadHistory(
        "demo-mql",
        Stage.MQL,
        True,
        [item(0, type="identify"), item(1, type="track", event="Demo Requested")],
    )
    report = simulate(LIVE, LIVE, [demo], at=T0 + timedelta(days=1))
    assert (report.score_changed, report.stage_changes, report.grade_changed) == (0, 0, 0)


def test_a_message_from_a_merged_lead_replays_for_its_behaviour_only() -> None:
    """As the live path counts it: the survivor's fit stays the survivor's."""
    student = {"profile": {"email": "s@gmail.com", "seniority": "student/intern",
                           "free_mail": True}, "firmographics": None}  # fmt: skip
    redirected = enriched_event(message_id="b1", identified=True, type="track",
                                event="Trial Started", **student)  # fmt: skip
    own = [item(0, type="identify"), item(1, type="track", event="Webinar Attended")]
    folded = HistoryItem("b1", T0 + timedelta(hours=2), facts_of(redirected), True, False)
    at = T0 + timedelta(hours=3)
    survivor = evaluate(LIVE, replay(LIVE, own), at)
    merged = evaluate(LIVE, replay(LIVE, [*own, folded]), at)
    assert merged.fit == survivor.fit > 0
    assert merged.behaviour > survivor.behaviour  # the trial counted
    as_own_picture = HistoryItem("b1", folded.at, folded.facts, True, True)
    assert evaluate(LIVE, replay(LIVE, [*own, as_own_picture]), at).fit < survivor.fit


def test_the_stage_a_history_earns_is_the_one_live_scoring_reaches() -> None:
    identify = item(0, type="identify")
    engaged = [identify, item(1, type="page", properties={"path": "/blog"})]
    demo = [*engaged, item(2, type="track", event="Demo Requested")]

    assert earned_stage(LIVE, []) == Stage.ANONYMOUS
    assert earned_stage(LIVE, [identify]) == Stage.KNOWN
    assert earned_stage(LIVE, engaged) == Stage.LEAD
    assert earned_stage(LIVE, demo) == Stage.MQL


def test_an_anonymous_history_earns_no_stage_however_hot() -> None:
    visitor = [
        HistoryItem(
            f"a{n}",
            T0 + timedelta(hours=n),
            facts_of(enriched_event(message_id=f"a{n}", type="track", event="Demo Requested")),
            True,
        )
        for n in range(3)
    ]

    assert earned_stage(LIVE, visitor) == Stage.ANONYMOUS


def test_a_candidate_may_ask_mqls_for_a_likelihood_which_each_lead_has_from_the_live_model() -> (
    None
):
    """`mql.min_likelihood` reads each lead's stored likelihood: an MQL the model finds unlikely
    would drop, a likely one stays; a lead without a likelihood (no model when it was scored)
    is judged by the score thresholds alone."""
    demo = [item(0, type="identify"), item(1, type="track", event="Demo Requested")]
    likely = LeadHistory("likely", Stage.MQL, True, demo, likelihood=0.41)
    unlikely = LeadHistory("unlikely", Stage.MQL, True, demo, likelihood=0.05)
    unknown = LeadHistory("no-model", Stage.MQL, True, demo, likelihood=None)
    document = LIVE.model_dump(by_alias=True)
    document["version"] = "candidate"
    document["mql"]["min_likelihood"] = 0.2
    candidate = RuleSet.model_validate(document)

    report = simulate(LIVE, candidate, [likely, unlikely, unknown], at=T0 + timedelta(days=1))

    assert [d.lead_id for d in report.would_drop_below_mql] == ["unlikely"]
    assert report.score_changed == 0  # the points are the same: only the MQL line moved


@pytest.mark.parametrize(
    ("card_qualifies", "likelihood", "minimum", "expected"),
    [
        (True, 0.3, 0.2, True),
        (True, 0.2, 0.2, True),  # at the line
        (True, 0.1, 0.2, False),
        (False, 0.9, 0.2, False),  # the score thresholds still hold first
        (True, None, 0.2, True),  # no likelihood: the score thresholds alone
        (True, 0.01, None, True),  # no likelihood threshold
    ],
)
def test_mql_thresholds_with_a_likelihood(
    card_qualifies: bool, likelihood: float | None, minimum: float | None, expected: bool
) -> None:
    thresholds = MqlThresholds(min_total=80, min_likelihood=minimum)

    assert thresholds.qualifies(card_qualifies, likelihood) is expected
