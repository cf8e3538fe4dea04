"""The consumer's shortcuts give what the plain definitions give: the state kept per event
equals the state read back from the ledger, the rule index never leaves out a rule that
holds, facts are the flattened event, and an evaluation's card is the score at its time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.score.engine.conditions import (
    PROFILE_PREFIXES,
    AllOf,
    call_facts_of,
    facts_of,
    profile_facts_of,
    required_values,
)
from services.score.engine.explain import state_of, state_of_rows
from services.score.engine.ruleset import RuleSet, load_rules
from services.score.engine.scoring import LedgerLine, ScoreState, evaluate, recorded, score_event
from tests.unit.builders import enriched_event

RULES = load_rules(Path(__file__).resolve().parents[2] / "services/score/rules/default.yaml")
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EVENTS = [
    "Demo Requested",
    "demo request submitted",
    "Contact Sales",
    "Trial Started",
    "Webinar Attended",
    "Content Downloaded",
    "Email Delivered",
    "Email Opened",
    "Email Link Clicked",
    "Unsubscribed",
    "Email Bounced",
    "Order Completed",
]
PATHS = ["/", "/pricing", "/product/x", "/careers", "/docs"]


def some_facts(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.4:
        return facts_of(enriched_event(type="page", properties={"path": rng.choice(PATHS)}))
    return facts_of(enriched_event(type="track", event=rng.choice(EVENTS)))


def test_state_kept_per_event_is_the_state_of_the_ledger() -> None:
    """Events in and out of time order, fit changes included: after each, the kept state is
    `state_of` the ledger lines written so far, awards in ledger order."""
    rng = random.Random(7)
    kept, engine_state = ScoreState(), ScoreState()
    ledger: list[LedgerLine] = []
    for index in range(300):
        at = T0 + timedelta(hours=index, minutes=-rng.choice([0, 0, 0, 90, 900]))
        facts = some_facts(rng)
        if index % 25 == 0:  # the picture changes now and then
            seniority = rng.choice(["vp", "manager", "student/intern"])
            facts = {**facts, "profile.seniority": seniority}
        result = score_event(
            RULES, engine_state, facts, at=at, message_id=f"m{index:03}", behaviour=True
        )
        engine_state = result.state
        kept = recorded(kept, result.lines)
        ledger += result.lines
        assert kept == state_of(ledger)
    assert len(kept.awards) > 30
    assert kept.awards != engine_state.awards  # out-of-order events really were sorted in


def test_state_of_rows_is_state_of_the_lines() -> None:
    lines = [
        LedgerLine(message_id="m2", rule_id="vp", group="persona", kind="fit", points=-25,
                   requested=25, reason="r", note="", rule_version="v", event_time=T0),
        LedgerLine(message_id="m1", rule_id="vp", group="persona", kind="fit", points=25,
                   requested=25, reason="r", note="", rule_version="v", event_time=T0),
        LedgerLine(message_id="m1", rule_id="demo-request", group="intent", kind="behaviour",
                   points=60, requested=60, reason="r", note="", rule_version="v", event_time=T0),
    ]  # fmt: skip
    rows = [
        (line.kind, line.rule_id, line.group, line.points, line.event_time, line.message_id)
        for line in sorted(lines, key=lambda r: (r.event_time, r.message_id, r.rule_id))
    ]
    assert state_of_rows(rows) == state_of(lines)
    assert state_of_rows(rows).fit == {}  # a fit rule given back holds nothing


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "event", "equals": "Demo Requested"}, {"demo requested"}),
        ({"field": "event", "in": ["A", "b"]}, {"a", "b"}),
        ({"field": "event", "in": ["A", 3]}, None),  # numbers compare as numbers
        ({"field": "event", "equals": True}, None),
        ({"field": "event", "contains": "demo"}, None),
        ({"field": "type", "equals": "track"}, None),
        ({"all": [{"field": "event", "in": ["A", "B"]}, {"field": "event", "equals": "b"}]},
         {"b"}),
        ({"all": [{"field": "type", "equals": "track"}, {"count": "x", "at_least": 1}]}, None),
        ({"any": [{"field": "event", "equals": "A"}, {"field": "event", "equals": "B"}]}, None),
        ({"not": {"field": "event", "equals": "A"}}, None),
    ],
)  # fmt: skip
def test_required_values(condition: dict[str, Any], expected: set[str] | None) -> None:
    parsed = AllOf.model_validate({"all": [condition]}).all[0]
    assert required_values(parsed, "event") == (None if expected is None else frozenset(expected))


def test_candidates_of_an_event_are_its_rules_and_the_unindexed_ones_in_file_order() -> None:
    ids = [
        r.id for r in RULES.behaviour_candidates(facts_of(enriched_event(event="Demo Requested")))
    ]
    assert ids == ["demo-request", "pricing-page", "product-pages", "careers-page"]
    delivered = RULES.behaviour_candidates(facts_of(enriched_event(event="EMAIL DELIVERED")))
    assert [r.id for r in delivered] == [
        "pricing-page", "product-pages", "email-delivered", "careers-page", "low-email-engagement",
    ]  # fmt: skip
    page = facts_of(enriched_event(type="page", properties={"path": "/pricing"}))
    assert [r.id for r in RULES.behaviour_candidates(page)] == [
        "pricing-page", "product-pages", "careers-page",
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_no_rule_that_holds_is_left_out(seed: int) -> None:
    """Whatever the counts, a behaviour rule that holds for an event is among its candidates;
    with the default rules that is checked over every event name they know and others."""
    rng = random.Random(seed)
    for _ in range(200):
        facts = some_facts(rng)
        if rng.random() < 0.3:
            facts["event"] = facts["event"] and facts["event"].swapcase()
        candidates = RULES.behaviour_candidates(facts)
        for n in (0, 1, 100):
            for rule in RULES.rules_of("behaviour"):
                if rule.when.holds(facts, lambda ids, days, n=n: n):
                    assert rule in candidates


def test_an_all_that_no_event_can_satisfy_is_never_a_candidate() -> None:
    document = RULES.model_dump(by_alias=True, exclude_none=True)
    document["rules"].append(
        {"id": "never", "group": "signals", "points": -1, "reason": "never",
         "when": {"all": [{"field": "event", "equals": "A"}, {"field": "event", "equals": "B"}]}}
    )  # fmt: skip
    rules = RuleSet.model_validate(document)
    for name in ("A", "B", None, "other"):
        facts = facts_of(enriched_event(event=name)) if name else {"event": None}
        assert "never" not in [r.id for r in rules.behaviour_candidates(facts)]


def _reference_flatten(prefix: str, value: Any, into: dict[str, Any], depth: int = 0) -> None:
    if isinstance(value, dict) and depth < 4:
        for key, inner in value.items():
            _reference_flatten(f"{prefix}.{key}", inner, into, depth + 1)
    else:
        into[prefix] = value


def test_facts_flatten_nested_properties_as_before() -> None:
    properties = {"a": 1, "b": {"c": {"d": {"e": {"f": 1}}, "g": [1, {"h": 2}]}}, "i": {}}
    event = enriched_event(properties=properties, context={"page": {"path": "/x"}, "k": None})
    expected: dict[str, Any] = {}
    _reference_flatten("properties", properties, expected)
    _reference_flatten("context", event.context, expected)
    facts = facts_of(event)
    assert {k: v for k, v in facts.items() if k.startswith(("properties", "context"))} == expected
    assert facts["properties.b.c.d.e"] == {"f": 1}  # deeper than four: one fact


def test_the_card_is_the_score_at_the_message_time() -> None:
    facts = facts_of(enriched_event(event="Demo Requested"))
    result = score_event(RULES, ScoreState(), facts, at=T0, message_id="m1", behaviour=True)
    assert result.card == evaluate(RULES, result.state, T0)
    assert result.card.behaviour == 60


def test_facts_are_the_call_then_the_picture() -> None:
    event = enriched_event(
        type="track",
        event="Demo Requested",
        properties={"profile": {"seniority": "vp"}},  # a property, not the picture
        profile={"email": "a@b.io", "seniority": "vp"},
    )
    picture = profile_facts_of(event)
    assert facts_of(event) == {**call_facts_of(event), **picture}
    assert picture
    assert all(key.startswith(PROFILE_PREFIXES) for key in picture)
    assert not any(key.startswith(PROFILE_PREFIXES) for key in call_facts_of(event))
    assert picture["profile.email_domain"] == "b.io"
