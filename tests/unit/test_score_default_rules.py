"""The shipped rule file encodes the domain's practice (docs/domain.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.score.engine.conditions import facts_of
from services.score.engine.ruleset import RuleSet, load_rules
from services.score.engine.scoring import Evaluation, ScoreState, evaluate, score_event
from tests.unit.builders import enriched_event

RULES_FILE = Path(__file__).resolve().parents[2] / "services/score/rules/default.yaml"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

VP_AT_MID_SIZE_SOFTWARE = {
    "profile": {
        "email": "maria@northwind.io",
        "title": "VP Sales",
        "seniority": "vp",
        "job_function": "sales",
        "company_domain": "northwind.io",
    },
    "firmographics": {
        "domain": "northwind.io",
        "employee_count": 850,
        "industry": "Software",
        "annual_revenue_usd": 120_000_000,
        "country": "US",
    },
}
STUDENT_AT_THE_SAME_COMPANY = {
    **VP_AT_MID_SIZE_SOFTWARE,
    "profile": {
        "email": "sam@northwind.io",
        "title": "Marketing Intern",
        "seniority": "student/intern",
        "job_function": "marketing",
    },
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(RULES_FILE)


def play(
    rules: RuleSet, who: dict[str, Any], steps: list[tuple[dict[str, Any], datetime]]
) -> Evaluation:
    state, result = ScoreState(), None
    for index, (call, at) in enumerate(steps):
        event = enriched_event(identified=True, message_id=f"m{index}", **who, **call)
        result = score_event(
            rules, state, facts_of(event), at=at, message_id=f"m{index}", behaviour=True
        )
        state = result.state
    assert result is not None
    return result


def demo() -> dict[str, Any]:
    return {"type": "track", "event": "Demo Requested"}


def page(path: str) -> dict[str, Any]:
    return {"type": "page", "properties": {"path": path}}


def test_vp_at_mid_size_target_company_asking_for_a_demo_is_mql_at_once(rules: RuleSet) -> None:
    result = play(rules, VP_AT_MID_SIZE_SOFTWARE, [(demo(), T0)])
    assert result.card.qualifies_as_mql
    assert result.card.priority == "A1"
    assert {e.rule_id for e in result.lines} >= {
        "vp",
        "mid-size-company",
        "target-industry",
        "demo-request",
    }


def test_student_reading_careers_pages_never_qualifies(rules: RuleSet) -> None:
    busy_student = [
        (page("/careers"), T0),
        (page("/pricing"), T0),
        (demo(), T0),
        ({"type": "track", "event": "Content Downloaded"}, T0),
        ({"type": "track", "event": "Webinar Attended"}, T0),
    ]
    result = play(rules, STUDENT_AT_THE_SAME_COMPANY, busy_student)
    assert not result.card.qualifies_as_mql
    assert result.card.grade == "D"


def test_unsubscribe_pulls_a_qualified_lead_down(rules: RuleSet) -> None:
    before = play(rules, VP_AT_MID_SIZE_SOFTWARE, [(demo(), T0)])
    after = play(
        rules,
        VP_AT_MID_SIZE_SOFTWARE,
        [(demo(), T0), ({"type": "track", "event": "Unsubscribed"}, T0)],
    )
    assert before.card.qualifies_as_mql
    assert not after.card.qualifies_as_mql
    assert after.card.behaviour == before.card.behaviour - 50


def test_free_mail_costs_fit(rules: RuleSet) -> None:
    gmail = {"profile": {"email": "bob@gmail.com", "free_mail": True, "seniority": "manager"}}
    result = play(rules, gmail, [(demo(), T0)])
    assert result.card.fit == 10 - 15
    assert not result.card.qualifies_as_mql


def test_an_old_demo_request_fades_below_the_line(rules: RuleSet) -> None:
    result = play(rules, VP_AT_MID_SIZE_SOFTWARE, [(demo(), T0)])
    later = evaluate(rules, result.state, T0 + timedelta(days=60))
    assert later.behaviour == 15  # two half-lives of 30 days
    assert not later.qualifies_as_mql


def test_pricing_page_spam_is_limited(rules: RuleSet) -> None:
    result = play(rules, VP_AT_MID_SIZE_SOFTWARE, [(page("/pricing"), T0)] * 10)
    assert result.card.behaviour == 45  # 3 per week


def email(name: str) -> dict[str, Any]:
    return {"type": "track", "event": name}


def test_very_low_email_engagement_costs_points_and_fades(rules: RuleSet) -> None:
    every_5_days = [(email("Email Delivered"), T0 + timedelta(days=5 * i)) for i in range(12)]
    ignored = play(rules, VP_AT_MID_SIZE_SOFTWARE, every_5_days)
    assert [e.rule_id for e in ignored.lines] == ["email-delivered"]  # once per 60 days
    penalty = [a for a in ignored.state.awards if a.rule_id == "low-email-engagement"]
    assert [(a.at, a.points) for a in penalty] == [(T0 + timedelta(days=45), -15)]  # 10th email
    assert evaluate(rules, ignored.state, T0 + timedelta(days=45)).behaviour == -15
    # it fades with the engagement group (linear over 60 days): a lead may win its way back
    assert evaluate(rules, ignored.state, T0 + timedelta(days=75)).behaviour == -8
    assert evaluate(rules, ignored.state, T0 + timedelta(days=105)).behaviour == 0

    def penalised(steps: list[tuple[dict[str, Any], datetime]]) -> bool:
        awards = play(rules, VP_AT_MID_SIZE_SOFTWARE, steps).state.awards
        return any(a.rule_id == "low-email-engagement" for a in awards)

    opened_twice = [(email("Email Opened"), T0 + timedelta(days=26))] * 2
    clicked_twice = [(email("Email Link Clicked"), T0 + timedelta(days=11))] * 2
    opened_once = opened_twice[:1]
    assert penalised(every_5_days[:6] + opened_once + every_5_days[6:])  # almost none opened
    assert not penalised(every_5_days[:6] + opened_twice + every_5_days[6:])
    assert not penalised(every_5_days[:3] + clicked_twice + every_5_days[3:])  # clicks read too
    assert not penalised(every_5_days[:9])  # nine emails are no signal yet
