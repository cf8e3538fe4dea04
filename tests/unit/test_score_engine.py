"""The scoring engine: each operator, caps, limits, decay maths, negative points, grades/bands,
MQL thresholds. Pure: rule sets are built in the test, times are explicit."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.score.engine.conditions import CountTest, FieldTest, facts_of
from services.score.engine.ruleset import RuleSet
from services.score.engine.scoring import ScoreState, evaluate, fell_below_line, score_event
from tests.unit.builders import enriched_event

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def ruleset(**overrides: Any) -> RuleSet:
    document: dict[str, Any] = {
        "version": "test-1",
        "groups": [
            {"id": "persona", "kind": "fit", "cap": 40},
            {"id": "company", "kind": "fit"},
            {"id": "intent", "kind": "behaviour", "cap": 100, "decay": {"half_life_days": 10}},
            {"id": "engagement", "kind": "behaviour", "cap": 30, "decay": {"linear_days": 20}},
            {"id": "signals", "kind": "behaviour"},
        ],
        "rules": [
            {
                "id": "vp",
                "group": "persona",
                "points": 25,
                "reason": "VP",
                "when": {"field": "profile.seniority", "in": ["vp", "c-level"]},
            },
            {
                "id": "sales-function",
                "group": "persona",
                "points": 20,
                "reason": "sales",
                "when": {"field": "profile.job_function", "equals": "sales"},
            },
            {
                "id": "student",
                "group": "persona",
                "points": -40,
                "reason": "student",
                "when": {"field": "profile.seniority", "equals": "student/intern"},
            },
            {
                "id": "mid-size",
                "group": "company",
                "points": 15,
                "reason": "mid-size",
                "when": {"field": "firmographics.employee_count", "at_least": 200, "below": 5000},
            },
            {
                "id": "demo",
                "group": "intent",
                "points": 60,
                "reason": "demo",
                "when": {"field": "event", "equals": "Demo Requested"},
            },
            {
                "id": "pricing",
                "group": "engagement",
                "points": 10,
                "reason": "pricing",
                "when": {"field": "page.path", "regex": "^/pricing"},
                "limit": {"times": 2, "within_days": 7},
            },
            {
                "id": "webinar",
                "group": "intent",
                "points": 20,
                "reason": "webinar",
                "when": {"field": "event", "contains": "webinar"},
                "limit": {"times": 1},
            },
            {
                "id": "unsubscribed",
                "group": "signals",
                "points": -50,
                "reason": "unsubscribed",
                "when": {"field": "event", "equals": "Unsubscribed"},
            },
        ],
        "caps": {"behaviour": 120},
        "grades": {"A": 40, "B": 25, "C": 10},
        "bands": {"1": 60, "2": 30, "3": 10},
        "mql": {"min_fit": 10, "min_total": 60},
    }
    document.update(overrides)
    return RuleSet.model_validate(document)


def facts(**event: Any) -> dict[str, Any]:
    return facts_of(enriched_event(**event))


def track(name: str, **extra: Any) -> dict[str, Any]:
    return facts(type="track", event=name, **extra)


def page(path: str) -> dict[str, Any]:
    return facts(type="page", properties={"path": path})


def apply_all(rules: RuleSet, steps: list[tuple[dict[str, Any], datetime]]) -> ScoreState:
    state = ScoreState()
    for index, (step_facts, at) in enumerate(steps):
        state = score_event(
            rules, state, step_facts, at=at, message_id=f"m{index}", behaviour=True
        ).state
    return state


# --- operators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [
        ({"equals": "Demo Requested"}, "demo requested", True),
        ({"equals": "Demo Requested"}, "Demo", False),
        ({"equals": 3}, "3", True),
        ({"equals": True}, True, True),
        ({"equals": True}, "true", True),
        ({"in": ["vp", "c-level"]}, "VP", True),
        ({"in": ["vp", "c-level"]}, "manager", False),
        ({"contains": "webinar"}, "Webinar Attended", True),
        ({"contains": "webinar"}, "Trial", False),
        ({"regex": r"^/(careers|jobs)\b"}, "/careers/open-roles", True),
        ({"regex": r"^/(careers|jobs)\b"}, "/blog/careers", False),
        ({"at_least": 200}, 200, True),
        ({"at_least": 200}, 199, False),
        ({"at_least": 200, "below": 5000}, 4999, True),
        ({"at_least": 200, "below": 5000}, 5000, False),
        ({"at_least": 10}, "12", True),
        ({"at_least": 10}, "many", False),
        ({"exists": True}, "x", True),
        ({"exists": True}, "", False),
        ({"exists": False}, None, True),
    ],
)
def test_operator(test: dict[str, Any], value: Any, expected: bool) -> None:
    condition = FieldTest.model_validate({"field": "x", **test})
    assert condition.holds({"x": value}) is expected


def test_missing_fact_fails_every_operator_but_exists_false() -> None:
    for test in (
        {"equals": "a"},
        {"in": ["a"]},
        {"contains": "a"},
        {"regex": "a"},
        {"at_least": 0},
        {"exists": True},
    ):
        assert FieldTest.model_validate({"field": "x", **test}).holds({}) is False


def test_all_any_not_combine() -> None:
    rules = ruleset(
        rules=[
            {
                "id": "pricing-not-careers",
                "group": "intent",
                "points": 5,
                "reason": "r",
                "when": {
                    "all": [
                        {"field": "type", "equals": "page"},
                        {
                            "any": [
                                {"field": "page.path", "contains": "pricing"},
                                {"field": "page.path", "contains": "plans"},
                            ]
                        },
                        {"not": {"field": "page.path", "contains": "careers"}},
                    ]
                },
            },
        ]
    )
    hits = [
        score_event(
            rules, ScoreState(), page(path), at=T0, message_id="m", behaviour=True
        ).card.behaviour
        for path in ("/pricing", "/plans/team", "/careers/pricing", "/blog")
    ]
    assert hits == [5, 5, 0, 0]


def test_page_path_comes_from_url_or_context() -> None:
    from_url = facts(type="page", properties={"url": "https://acme.io/pricing?x=1"})
    from_context = facts(type="track", event="Clicked", context={"page": {"path": "/pricing"}})
    assert from_url["page.path"] == "/pricing"
    assert from_context["page.path"] == "/pricing"


# --- fit ----------------------------------------------------------------------------------


def test_fit_counts_once_and_follows_the_profile() -> None:
    rules = ruleset()
    vp = facts(type="identify", profile={"seniority": "vp", "email": "a@b.io"})
    first = score_event(rules, ScoreState(), vp, at=T0, message_id="m1", behaviour=True)
    again = score_event(rules, first.state, vp, at=T0, message_id="m2", behaviour=True)
    assert first.card.fit == 25
    assert [e.rule_id for e in first.lines] == ["vp"]
    assert again.lines == ()  # nothing new: fit counts once per lead
    demoted = score_event(
        rules,
        again.state,
        facts(type="identify", profile={"seniority": "manager"}),
        at=T0,
        message_id="m3",
        behaviour=True,
    )
    assert demoted.card.fit == 0
    assert [(e.rule_id, e.points) for e in demoted.lines] == [("vp", -25)]
    assert demoted.lines[0].reason.startswith("no longer")


def test_fit_group_cap_fills_in_file_order() -> None:
    rules = ruleset()
    profile = {"seniority": "vp", "job_function": "sales"}
    result = score_event(
        rules,
        ScoreState(),
        facts(type="identify", profile=profile),
        at=T0,
        message_id="m",
        behaviour=True,
    )
    assert result.card.fit == 40  # 25 + 20 capped to the persona cap of 40
    assert [(e.rule_id, e.points, e.requested) for e in result.lines] == [
        ("vp", 25, 25),
        ("sales-function", 15, 20),
    ]
    assert "capped" in result.lines[1].note


def test_negative_fit_points_are_never_capped() -> None:
    rules = ruleset()
    result = score_event(
        rules,
        ScoreState(),
        facts(type="identify", profile={"seniority": "student/intern"}),
        at=T0,
        message_id="m",
        behaviour=True,
    )
    assert result.card.fit == -40
    assert result.card.grade == "D"


def test_numeric_firmographics_range() -> None:
    rules = ruleset()
    inside = facts(type="identify", firmographics={"domain": "a.io", "employee_count": 850})
    outside = facts(type="identify", firmographics={"domain": "a.io", "employee_count": 12})
    assert (
        score_event(rules, ScoreState(), inside, at=T0, message_id="m", behaviour=True).card.fit
        == 15
    )
    assert (
        score_event(rules, ScoreState(), outside, at=T0, message_id="m", behaviour=True).card.fit
        == 0
    )


# --- behaviour: limits, caps, decay, negatives ---------------------------------------------


def test_limit_within_window_counts_by_event_time() -> None:
    rules = ruleset()
    day = timedelta(days=1)
    state = apply_all(
        rules,
        [
            (page("/pricing"), T0),
            (page("/pricing"), T0 + day),
            (page("/pricing"), T0 + 2 * day),
            (page("/pricing"), T0 + 8 * day),
        ],
    )
    # two in the first week, the third refused, the fourth is outside the 7-day window again
    assert [a.at for a in state.awards] == [T0, T0 + day, T0 + 8 * day]


def test_once_per_lead_limit() -> None:
    rules = ruleset()
    state = apply_all(
        rules,
        [(track("Webinar Attended"), T0), (track("Webinar Attended"), T0 + timedelta(days=300))],
    )
    assert len(state.awards) == 1


def test_group_cap_clips_and_says_so() -> None:
    rules = ruleset()
    state = apply_all(rules, [(track("Demo Requested"), T0), (track("Demo Requested"), T0)])
    assert [a.points for a in state.awards] == [60, 40]  # intent cap 100
    third = score_event(
        rules, state, track("Demo Requested"), at=T0, message_id="x", behaviour=True
    )
    assert [(e.points, e.requested) for e in third.lines] == [(0, 60)]
    assert third.card.behaviour == 100


def test_total_behaviour_cap() -> None:
    rules = ruleset(caps={"behaviour": 70})
    state = apply_all(
        rules, [(track("Demo Requested"), T0), (page("/pricing"), T0), (page("/pricing"), T0)]
    )
    assert [a.points for a in state.awards] == [60, 10, 0]
    assert evaluate(rules, state, T0).behaviour == 70


def test_half_life_decay() -> None:
    rules = ruleset()
    state = apply_all(rules, [(track("Demo Requested"), T0)])
    assert evaluate(rules, state, T0).behaviour == 60
    assert evaluate(rules, state, T0 + timedelta(days=10)).behaviour == 30
    assert evaluate(rules, state, T0 + timedelta(days=20)).behaviour == 15
    # an event older than the evaluation time never counts more than its points
    assert evaluate(rules, state, T0 - timedelta(days=5)).behaviour == 60


def test_linear_decay_reaches_zero() -> None:
    rules = ruleset()
    state = apply_all(rules, [(page("/pricing"), T0)])
    assert evaluate(rules, state, T0 + timedelta(days=10)).behaviour == 5
    assert evaluate(rules, state, T0 + timedelta(days=20)).behaviour == 0
    assert evaluate(rules, state, T0 + timedelta(days=400)).behaviour == 0


def test_decay_frees_room_under_the_cap() -> None:
    rules = ruleset()
    state = apply_all(rules, [(track("Demo Requested"), T0), (track("Demo Requested"), T0)])
    later = T0 + timedelta(days=10)  # 100 decayed to 50: room for 50 again
    result = score_event(
        rules, state, track("Demo Requested"), at=later, message_id="m", behaviour=True
    )
    assert [e.points for e in result.lines] == [50]
    assert result.card.behaviour == 100


def test_negative_points_without_decay_stay() -> None:
    rules = ruleset()
    state = apply_all(rules, [(track("Demo Requested"), T0), (track("Unsubscribed"), T0)])
    assert evaluate(rules, state, T0).behaviour == 10
    assert evaluate(rules, state, T0 + timedelta(days=30)).behaviour == round(60 / 8) - 50


def test_replay_gives_the_same_numbers() -> None:
    rules = ruleset()
    steps = [
        (track("Demo Requested"), T0),
        (page("/pricing"), T0 + timedelta(hours=3)),
        (track("Unsubscribed"), T0 + timedelta(days=2)),
    ]
    first, second = apply_all(rules, steps), apply_all(rules, steps)
    at = T0 + timedelta(days=3)
    assert evaluate(rules, first, at) == evaluate(rules, second, at)


def test_profile_update_applies_fit_only() -> None:
    rules = ruleset()
    demo_with_profile = facts(type="track", event="Demo Requested", profile={"seniority": "vp"})
    result = score_event(
        rules, ScoreState(), demo_with_profile, at=T0, message_id="m", behaviour=False
    )
    assert [e.rule_id for e in result.lines] == ["vp"]


def test_total_is_the_ledger_sum() -> None:
    rules = ruleset()
    state = ScoreState()
    ledger: list[int] = []
    steps = [
        facts(type="identify", profile={"seniority": "vp", "job_function": "sales"}),
        track("Demo Requested"),
        page("/pricing"),
        track("Webinar Attended"),
        facts(type="identify", profile={"seniority": "manager"}),
        track("Unsubscribed"),
    ]
    for index, step in enumerate(steps):
        result = score_event(rules, state, step, at=T0, message_id=f"m{index}", behaviour=True)
        ledger += [line.points for line in result.lines]
        state = result.state
        assert result.card.total == sum(ledger)


# --- grade, band, priority, MQL ---------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "event", "priority", "mql"),
    [
        ({"seniority": "vp", "job_function": "sales"}, "Demo Requested", "A1", True),
        ({"seniority": "vp"}, "Demo Requested", "B1", True),
        ({"seniority": "vp"}, "Webinar Attended", "B3", False),
        ({"seniority": "manager"}, "Demo Requested", "D1", False),  # fit below min_fit
        ({"seniority": "student/intern"}, "Demo Requested", "D1", False),
    ],
)
def test_priority_matrix_and_mql(
    profile: dict[str, str], event: str, priority: str, mql: bool
) -> None:
    rules = ruleset()
    result = score_event(
        rules, ScoreState(), track(event, profile=profile), at=T0, message_id="m", behaviour=True
    )
    assert result.card.priority == priority
    assert result.card.qualifies_as_mql is mql


def test_fell_below_line_finds_when_decay_took_an_mql_under_the_line() -> None:
    """A VP's demo (60 points halving every 10 days, fit 25): total 85 >= 60 at first, and
    25 + round(60 * 0.5 ** (d / 10)) < 60 from d = 10 * log2(60 / 34.5) = 7.98 days on (scores
    are whole points). Found to within a minute whatever the interval it is looked for in (a
    backfilled lead: months)."""
    rules = ruleset()
    state = score_event(rules, ScoreState(), track("Demo Requested", profile={"seniority": "vp"}),
                        at=T0, message_id="m", behaviour=True).state  # fmt: skip
    crossing = T0 + timedelta(days=10 * math.log2(60 / 34.5))
    for until in (T0 + timedelta(days=9), T0 + timedelta(days=300)):
        found = fell_below_line(rules, state, since=T0, until=until)
        assert abs((found - crossing).total_seconds()) <= 60
        assert not evaluate(rules, state, found).qualifies_as_mql
        assert evaluate(rules, state, found - timedelta(minutes=2)).qualifies_as_mql


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"groups": [{"id": "g", "kind": "fit", "decay": {"half_life_days": 3}}]},
            "fit groups do not decay",
        ),
        (
            {
                "rules": [
                    {
                        "id": "x",
                        "group": "nope",
                        "points": 1,
                        "reason": "r",
                        "when": {"field": "event", "equals": "a"},
                    }
                ]
            },
            "unknown group 'nope'",
        ),
        (
            {
                "rules": [
                    {
                        "id": "x",
                        "group": "persona",
                        "points": 1,
                        "reason": "r",
                        "when": {"field": "event", "equals": "a"},
                    }
                ]
            },
            "a fit rule may only read",
        ),
        (
            {
                "rules": [
                    {
                        "id": "x",
                        "group": "intent",
                        "points": 1,
                        "reason": "r",
                        "when": {"field": "event", "regex": "("},
                    }
                ]
            },
            "not a regular expression",
        ),
        (
            {
                "rules": [
                    {
                        "id": "x",
                        "group": "intent",
                        "points": 1,
                        "reason": "r",
                        "when": {"field": "event", "equals": "a", "contains": "b"},
                    }
                ]
            },
            "one operator per test",
        ),
        ({"grades": {"A": 10, "B": 20, "C": 5}}, "grades must descend"),
        ({"mql": {}}, "give at least one of"),
    ],
)
def test_invalid_rule_sets_say_why(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ruleset(**change)


# --- counts of earlier awards -------------------------------------------------------------


def email_rules(**low: Any) -> RuleSet:
    """A 0-point tally of deliveries and a negative rule on deliveries without opens."""
    tally = {"id": "delivered", "group": "signals", "points": 0, "reason": "delivered",
             "when": {"field": "event", "equals": "Email Delivered"}}  # fmt: skip
    opened = {"id": "opened", "group": "engagement", "points": 1, "reason": "opened",
              "when": {"field": "event", "equals": "Email Opened"}}  # fmt: skip
    clicked = {"id": "clicked", "group": "engagement", "points": 2, "reason": "clicked",
               "when": {"field": "event", "equals": "Email Link Clicked"}}  # fmt: skip
    ignored = {"id": "ignoring", "group": "signals", "points": -15, "reason": "ignores email",
               "when": {"all": [
                   {"field": "event", "equals": "Email Delivered"},
                   {"count": "delivered", "within_days": 30, "at_least": 4},
                   {"count": ["opened", "clicked"], "within_days": 30, "below": 2},
               ]}, **low}  # fmt: skip
    return ruleset(rules=[*ruleset().model_dump(by_alias=True, exclude_none=True)["rules"],
                          tally, opened, clicked, ignored])  # fmt: skip


def emails(*kinds: str, start: datetime = T0) -> list[tuple[dict[str, Any], datetime]]:
    names = {"d": "Email Delivered", "o": "Email Opened", "c": "Email Link Clicked"}
    return [(track(names[k]), start + timedelta(days=i)) for i, k in enumerate(kinds)]


def test_a_count_sees_earlier_awards_including_this_events_earlier_rules() -> None:
    rules = email_rules()
    three = apply_all(rules, emails("d", "d", "d"))
    assert [a.rule_id for a in three.awards] == ["delivered"] * 3
    assert evaluate(rules, three, T0 + timedelta(days=3)).behaviour == 0  # a tally: no points
    # the fourth delivery is counted by the tally before the negative rule looks
    four = apply_all(rules, emails("d", "d", "d", "d"))
    assert [a.rule_id for a in four.awards][-2:] == ["delivered", "ignoring"]
    assert evaluate(rules, four, T0 + timedelta(days=4)).behaviour == -15


@pytest.mark.parametrize(
    ("kinds", "penalised"),
    [
        ("ddodd", True),  # one open in four deliveries: below 2
        ("ddoodd", False),  # two opens
        ("ddocdd", False),  # an open and a click count together
        ("ddd", False),  # too few emails to judge
    ],
)
def test_count_sums_rules_and_bounds(kinds: str, penalised: bool) -> None:
    state = apply_all(email_rules(), emails(*kinds))
    assert ("ignoring" in [a.rule_id for a in state.awards]) is penalised


def test_count_window_is_event_time() -> None:
    rules = email_rules()
    # deliveries 10 days apart: never 4 within 30 days
    spaced = [(track("Email Delivered"), T0 + timedelta(days=10 * i)) for i in range(8)]
    assert "ignoring" not in [a.rule_id for a in apply_all(rules, spaced).awards]
    # an open 40 days ago no longer counts as engagement
    opens = [(track("Email Opened"), T0), (track("Email Opened"), T0)]
    old_open = [*opens, *emails("d", "d", "d", "d", start=T0 + timedelta(days=40))]
    assert "ignoring" in [a.rule_id for a in apply_all(rules, old_open).awards]


def test_count_rule_obeys_its_limit() -> None:
    rules = email_rules(limit={"times": 1, "within_days": 30})
    state = apply_all(rules, emails(*"dddddddd"))
    assert [a.rule_id for a in state.awards].count("ignoring") == 1


def test_count_without_counts_at_hand_counts_zero() -> None:
    test = CountTest.model_validate({"count": "x", "below": 1})
    assert test.holds({}) is True
    assert test.holds({}, lambda ids, days: 3) is False
    assert CountTest.model_validate({"count": ["x", "y"], "at_least": 2}).count == ["x", "y"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"group": "intent", "when": {"count": "demo"}}, "a count needs at_least and/or below"),
        ({"group": "intent", "when": {"count": "nope", "at_least": 1}}, "which is no behaviour"),
        ({"group": "intent", "when": {"count": "vp", "at_least": 1}}, "which is no behaviour"),
        ({"group": "persona", "when": {"count": "demo", "at_least": 1}}, "a fit rule may only"),
    ],
)
def test_invalid_counts_say_why(rule: dict[str, Any], message: str) -> None:
    base = ruleset().model_dump(by_alias=True, exclude_none=True)["rules"]
    with pytest.raises(ValidationError, match=message):
        ruleset(rules=[*base, {"id": "x", "points": -5, "reason": "r", **rule}])
