"""Scoring and the forward lifecycle with the default rules file (services/score)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from services.score.domain import LeadState, StageMove, advance_stage, score_event, score_of
from services.score.rules import DEFAULT_RULES_FILE, RuleSet, load_rules
from shared.contracts import EnrichedEvent, LeadProfile, Stage
from tests.unit.builders import enriched_event, page_view, profile, track

pytestmark = pytest.mark.unit

RULES = load_rules(DEFAULT_RULES_FILE)
MQL_TOTAL = RULES.thresholds.mql_total

VP = profile()  # VP of Sales Operations, work email at northwind-logistics.com
STUDENT = LeadProfile(
    email="jonas.weber@gmail.com",
    first_name="Jonas",
    last_name="Weber",
    title="Computer Science Student",
)


def play(
    events: Iterable[EnrichedEvent], *, state: LeadState | None = None, rules: RuleSet = RULES
) -> tuple[LeadState, list[StageMove]]:
    """Apply events in order as the score handler does: score, then advance the stage."""
    state = state or LeadState(lead_id="lead-1")
    moves: list[StageMove] = []
    for event in events:
        state = score_event(state, event, rules).state
        move = advance_stage(
            state.stage,
            identified=event.identified,
            engaged=state.engaged,
            total=state.total,
            rules=rules,
        )
        if move is not None:
            moves.append(move)
            state = replace(state, stage=move.to_stage)
    return state, moves


def rule_ids(event: EnrichedEvent, state: LeadState | None = None) -> list[str]:
    change = score_event(state or LeadState(lead_id="lead-1"), event, RULES)
    return [c.rule_id for c in change.contributions]


# ---- whole leads ------------------------------------------------------------------------------


def test_a_vp_with_a_work_email_asking_for_a_demo_is_an_mql_at_once() -> None:
    demo = track("Demo Requested", identified=True, profile=VP)

    change = score_event(LeadState(lead_id="lead-1"), demo, RULES)
    move = advance_stage(
        Stage.ANONYMOUS,
        identified=True,
        engaged=change.state.engaged,
        total=change.state.total,
        rules=RULES,
    )

    assert {c.rule_id: c.points for c in change.contributions} == {
        "senior-title": 25,
        "work-email": 10,
        "demo-request": 60,
    }
    assert (change.state.fit, change.state.behaviour, change.state.total) == (35, 60, 95)
    assert move == StageMove(Stage.ANONYMOUS, Stage.MQL, "total score 95 >= MQL threshold 60")


def test_a_student_on_the_careers_page_loses_points_and_never_becomes_an_mql() -> None:
    visits = [
        enriched_event(type="identify", identified=True, profile=STUDENT),
        page_view("/careers", identified=True, profile=STUDENT),
        page_view("/careers/internships", identified=True, profile=STUDENT),
        page_view("/pricing", identified=True, profile=STUDENT),
        track("Webinar Attended", identified=True, profile=STUDENT),
    ]

    state, moves = play(visits)

    assert state.fit == -40
    assert state.behaviour == -20 - 20 + 15 + 20
    assert state.total < 0
    assert [m.to_stage for m in moves] == [Stage.KNOWN, Stage.LEAD]
    assert state.stage == Stage.LEAD


def test_the_careers_page_alone_costs_points() -> None:
    change = score_event(LeadState(lead_id="lead-1"), page_view("/careers/engineering"), RULES)

    assert [(c.rule_id, c.points) for c in change.contributions] == [("careers-page", -20)]
    assert change.state.total == -20


def test_an_anonymous_visitor_collects_points_but_stays_anonymous_until_identified() -> None:
    anonymous = [page_view("/pricing"), track("Webinar Attended"), track("Trial Started")]
    state, moves = play(anonymous)

    assert (state.total, state.stage, moves) == (75, Stage.ANONYMOUS, [])

    state, moves = play(
        [enriched_event(type="identify", identified=True, profile=profile(title=None))],
        state=state,
    )

    assert moves == [StageMove(Stage.ANONYMOUS, Stage.MQL, "total score 85 >= MQL threshold 60")]


# ---- fit and behaviour rules ------------------------------------------------------------------


def test_fit_rules_count_once_per_lead_across_events() -> None:
    events = [
        page_view("/", identified=True, profile=VP),
        page_view("/product", identified=True, profile=VP),
        track("Content Downloaded", identified=True, profile=VP),
    ]
    state = LeadState(lead_id="lead-1")
    earned: list[list[str]] = []
    for event in events:
        change = score_event(state, event, RULES)
        earned.append([c.rule_id for c in change.contributions])
        state = change.state

    assert earned == [["senior-title", "work-email"], [], ["content-download"]]
    assert state.fit == 35
    assert state.fit_rules_awarded == {"senior-title", "work-email"}


def test_a_fit_rule_counts_when_the_profile_first_reveals_it() -> None:
    state, _ = play(
        [page_view("/", identified=True, profile=VP.model_copy(update={"title": None}))]
    )
    assert state.fit == 10

    state, _ = play([page_view("/", identified=True, profile=VP)], state=state)

    assert state.fit == 35
    assert state.fit_rules_awarded == {"senior-title", "work-email"}


def test_behaviour_rules_count_every_time() -> None:
    state, _ = play([page_view("/pricing")] * 3)

    assert state.behaviour == 45
    assert state.fit == 0


@pytest.mark.parametrize(
    ("event", "rules"),
    [
        pytest.param(track("Demo Requested"), ["demo-request"], id="demo"),
        pytest.param(track("demo requested"), ["demo-request"], id="event-name-ignores-case"),
        pytest.param(track("Contact Sales"), ["contact-sales"], id="contact-sales"),
        pytest.param(track("Trial Started"), ["trial-started"], id="trial"),
        pytest.param(track("Unsubscribed"), ["unsubscribed"], id="unsubscribed"),
        pytest.param(page_view("/pricing/enterprise"), ["pricing-page"], id="pricing-subpage"),
        pytest.param(
            track("Page Viewed", properties={"path": "/PRICING"}),
            ["pricing-page"],
            id="pricing-as-track",
        ),
        pytest.param(page_view("/blog/why-lead-scoring"), [], id="blog"),
        pytest.param(
            enriched_event(type="page", name="Demo Requested"), [], id="a-page-is-not-a-track"
        ),
        pytest.param(page_view("/pricing", properties={"path": 42}), [], id="path-not-text"),
        pytest.param(track("Demo Request"), [], id="event-name-must-match-whole"),
    ],
)
def test_behaviour_rules(event: EnrichedEvent, rules: list[str]) -> None:
    assert rule_ids(event) == rules


def test_unsubscribing_takes_points_away() -> None:
    state = LeadState(lead_id="lead-1", stage=Stage.LEAD, behaviour=30)

    change = score_event(state, track("Unsubscribed"), RULES)

    assert [(c.rule_id, c.points) for c in change.contributions] == [("unsubscribed", -50)]
    assert change.state.behaviour == -20


def test_every_contribution_explains_itself() -> None:
    change = score_event(LeadState(lead_id="lead-1"), track("Demo Requested", profile=VP), RULES)

    reasons = {c.rule_id: c.reason for c in change.contributions}
    assert reasons["demo-request"] == "asked for a demo"
    assert all(reasons.values())


@pytest.mark.parametrize(
    ("event", "engaged"),
    [
        (enriched_event(type="identify"), False),
        (enriched_event(type="group"), False),
        (enriched_event(type="alias"), False),
        (enriched_event(type="page"), True),
        (enriched_event(type="screen"), True),
        (track("Newsletter Subscribed"), True),
    ],
    ids=lambda v: v.type if isinstance(v, EnrichedEvent) else str(v),
)
def test_engagement(event: EnrichedEvent, engaged: bool) -> None:
    assert score_event(LeadState(lead_id="lead-1"), event, RULES).state.engaged is engaged


def test_engagement_is_never_lost() -> None:
    state = LeadState(lead_id="lead-1", engaged=True)

    assert score_event(state, enriched_event(type="identify"), RULES).state.engaged


def test_scoring_does_not_change_the_stage() -> None:
    state = LeadState(lead_id="lead-1", stage=Stage.KNOWN)

    change = score_event(state, track("Demo Requested", identified=True, profile=VP), RULES)

    assert change.state.stage == Stage.KNOWN


# ---- advance_stage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "identified", "engaged", "total", "to_stage"),
    [
        pytest.param(Stage.ANONYMOUS, False, False, 0, None, id="anonymous-stays"),
        pytest.param(Stage.ANONYMOUS, False, True, 500, None, id="anonymous-high-score-stays"),
        pytest.param(Stage.ANONYMOUS, True, False, 0, Stage.KNOWN, id="identified-known"),
        pytest.param(Stage.ANONYMOUS, True, True, 0, Stage.LEAD, id="identified-engaged-lead"),
        pytest.param(Stage.KNOWN, True, False, 59, None, id="known-stays"),
        pytest.param(Stage.KNOWN, True, True, 59, Stage.LEAD, id="known-engaged-lead"),
        pytest.param(Stage.KNOWN, True, True, 60, Stage.MQL, id="known-at-threshold-mql"),
        pytest.param(Stage.KNOWN, True, False, 60, Stage.MQL, id="known-skips-lead"),
        pytest.param(Stage.LEAD, True, True, 59, None, id="lead-below-threshold-stays"),
        pytest.param(Stage.LEAD, True, True, 60, Stage.MQL, id="lead-at-threshold-mql"),
        pytest.param(Stage.LEAD, True, True, -60, None, id="lead-never-moves-back"),
        pytest.param(Stage.MQL, True, True, 500, None, id="mql-stays"),
        pytest.param(Stage.SQL, True, True, 500, None, id="sql-stays"),
        pytest.param(Stage.SQO, True, True, 500, None, id="sqo-stays"),
        pytest.param(Stage.CUSTOMER, True, True, 500, None, id="customer-stays"),
        pytest.param(Stage.RECYCLED, True, True, 500, None, id="recycled-stays"),
        pytest.param(Stage.DISQUALIFIED, True, True, 500, None, id="disqualified-stays"),
    ],
)
def test_advance_stage(
    stage: Stage, identified: bool, engaged: bool, total: int, to_stage: Stage | None
) -> None:
    move = advance_stage(stage, identified=identified, engaged=engaged, total=total, rules=RULES)

    assert (move.to_stage if move else None) == to_stage
    if move is not None:
        assert move.from_stage == stage


@pytest.mark.parametrize(
    ("stage", "engaged", "total", "reason"),
    [
        (Stage.ANONYMOUS, False, 0, "identified"),
        (Stage.ANONYMOUS, True, 0, "engaged after identification"),
        (Stage.LEAD, True, 75, "total score 75 >= MQL threshold 60"),
    ],
)
def test_a_stage_move_gives_its_reason(
    stage: Stage, engaged: bool, total: int, reason: str
) -> None:
    move = advance_stage(stage, identified=True, engaged=engaged, total=total, rules=RULES)

    assert move is not None
    assert move.reason == reason


def test_the_threshold_comes_from_the_rules() -> None:
    strict = RULES.model_copy(
        update={"thresholds": RULES.thresholds.model_copy(update={"mql_total": 100})}
    )

    assert advance_stage(Stage.LEAD, identified=True, engaged=True, total=99, rules=strict) is None
    assert advance_stage(Stage.LEAD, identified=True, engaged=True, total=100, rules=strict)


# ---- grades -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fit", "grade"),
    [
        (70, "A"),
        (35, "A"),
        (34, "B"),
        (20, "B"),
        (19, "C"),
        (10, "C"),
        (9, "D"),
        (0, "D"),
        (-40, "D"),
    ],
)
def test_grade_by_fit(fit: int, grade: str) -> None:
    score = score_of(LeadState(lead_id="lead-1", fit=fit, behaviour=100), RULES)

    assert score.grade == grade
    assert (score.fit, score.behaviour, score.total) == (fit, 100, fit + 100)


def test_behaviour_does_not_change_the_grade() -> None:
    keen_student = score_of(LeadState(lead_id="lead-1", fit=-40, behaviour=500), RULES)

    assert keen_student.grade == "D"
