"""The rules editor's form (`services.console.rules_form`): a document shown as fields and the
fields applied back, leaving every part the form did not send as it was."""

from __future__ import annotations

from typing import Any

import pytest

from services.console.rules_form import apply_form, describe, simple_condition

DOCUMENT: dict[str, Any] = {
    "version": "3",
    "groups": [
        {"id": "persona", "kind": "fit", "cap": 50},
        {"id": "intent", "kind": "behaviour", "cap": 100, "decay": {"half_life_days": 30}},
    ],
    "rules": [
        {"id": "vp", "group": "persona", "points": 25, "reason": "VP",
         "when": {"field": "profile.seniority", "equals": "vp"}},
        {"id": "demo", "group": "intent", "points": 60, "reason": "asked for a demo",
         "when": {"field": "event", "in": ["Demo Requested", "Demo Request Submitted"]},
         "limit": {"times": 1, "within_days": 7}},
        {"id": "low", "group": "intent", "points": -15, "reason": "low engagement",
         "when": {"all": [{"field": "event", "equals": "Email Delivered"},
                          {"count": "email-delivered", "within_days": 60, "at_least": 10}]}},
    ],
    "caps": {"fit": 100, "behaviour": 150},
    "grades": {"A": 60, "B": 40, "C": 20},
    "mql": {"min_fit": 20, "min_total": 80},
}  # fmt: skip


def test_an_empty_form_changes_nothing() -> None:
    assert apply_form(DOCUMENT, {}) == DOCUMENT


def test_the_form_does_not_change_the_document_it_was_given() -> None:
    before = repr(DOCUMENT)
    apply_form(DOCUMENT, {"rules.0.points": "99", "rules.1.delete": "on", "caps.fit": ""})
    assert repr(DOCUMENT) == before


@pytest.mark.parametrize(
    ("form", "path", "expected"),
    [
        # points read as YAML reads a number
        ({"rules.1.points": "20"}, ("rules", 1, "points"), 20),
        # text that is no number is passed on, for score to refuse by its field's name
        ({"rules.1.points": "lots"}, ("rules", 1, "points"), "lots"),
        ({"rules.0.reason": "  a budget holder "}, ("rules", 0, "reason"), "a budget holder"),
        # a limit: times and days; an empty times removes it
        ({"rules.1.limit.times": "2", "rules.1.limit.within_days": ""}, ("rules", 1, "limit"),
         {"times": 2}),
        ({"rules.0.limit.times": "3", "rules.0.limit.within_days": "1.5"}, ("rules", 0, "limit"),
         {"times": 3, "within_days": 1.5}),
        # a simple condition, rebuilt from field, operator and value
        ({"rules.0.when.field": "profile.seniority", "rules.0.when.op": "in",
          "rules.0.when.value": "vp, c-level"}, ("rules", 0, "when"),
         {"field": "profile.seniority", "in": ["vp", "c-level"]}),
        ({"rules.0.when.field": "profile.free_mail", "rules.0.when.op": "equals",
          "rules.0.when.value": "true"}, ("rules", 0, "when"),
         {"field": "profile.free_mail", "equals": True}),
        ({"rules.0.when.field": "page.path", "rules.0.when.op": "regex",
          "rules.0.when.value": "^/pricing"}, ("rules", 0, "when"),
         {"field": "page.path", "regex": "^/pricing"}),
        # a group's cap and decay
        ({"groups.1.cap": ""}, ("groups", 1, "cap"), None),
        ({"groups.1.decay.kind": "linear_days", "groups.1.decay.days": "45"},
         ("groups", 1, "decay"), {"linear_days": 45}),
        ({"groups.1.decay.kind": "", "groups.1.decay.days": "45"}, ("groups", 1, "decay"), None),
        # thresholds: set, changed, removed
        ({"mql.min_total": "90"}, ("mql", "min_total"), 90),
        ({"mql.min_behaviour": "30"}, ("mql", "min_behaviour"), 30),
        ({"mql.min_fit": ""}, ("mql", "min_fit"), None),
        ({"mql.min_likelihood": "0.3"}, ("mql", "min_likelihood"), 0.3),
    ],
)  # fmt: skip
def test_a_field_of_the_form_changes_its_part_of_the_document(
    form: dict[str, str], path: tuple[Any, ...], expected: Any
) -> None:
    found: Any = apply_form(DOCUMENT, form)
    for part in path[:-1]:
        found = found[part]
    assert found.get(path[-1]) == expected


def test_a_combined_condition_is_left_to_the_yaml() -> None:
    form = {"rules.2.when.field": "event", "rules.2.when.op": "equals", "rules.2.when.value": "x"}
    assert apply_form(DOCUMENT, form)["rules"][2]["when"] == DOCUMENT["rules"][2]["when"]


def test_a_rule_is_deleted_and_a_new_one_added_at_the_end() -> None:
    form = {"rules.0.delete": "on", "new.id": "pricing", "new.group": "intent",
            "new.field": "page.path", "new.op": "contains", "new.value": "/pricing",
            "new.points": "15", "new.reason": "viewed pricing", "new.limit.times": "3",
            "new.limit.within_days": "7"}  # fmt: skip
    rules = apply_form(DOCUMENT, form)["rules"]
    assert [rule["id"] for rule in rules] == ["demo", "low", "pricing"]
    assert rules[-1] == {"id": "pricing", "group": "intent", "points": 15,
                         "reason": "viewed pricing",
                         "when": {"field": "page.path", "contains": "/pricing"},
                         "limit": {"times": 3, "within_days": 7}}  # fmt: skip


def test_no_new_rule_without_an_id() -> None:
    form = {"new.id": " ", "new.points": "15", "new.field": "event"}
    assert len(apply_form(DOCUMENT, form)["rules"]) == 3


def test_a_date_typed_in_a_value_stays_text() -> None:
    form = {"rules.0.when.field": "properties.day", "rules.0.when.op": "equals",
            "rules.0.when.value": "2026-12-03"}  # fmt: skip
    assert apply_form(DOCUMENT, form)["rules"][0]["when"]["equals"] == "2026-12-03"


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"field": "event", "equals": "Webinar Attended"}, ("event", "equals", "Webinar Attended")),
        ({"field": "event", "in": ["A", "B"]}, ("event", "in", "A, B")),
        ({"field": "profile.free_mail", "equals": True}, ("profile.free_mail", "equals", "true")),
        ({"field": "firmographics.employee_count", "below": 11.0},
         ("firmographics.employee_count", "below", "11")),
        # a range, or a combined condition: not one field, one operator
        ({"field": "firmographics.employee_count", "at_least": 201, "below": 5001}, None),
        ({"any": [{"field": "event", "equals": "A"}]}, None),
        ({"count": "x", "at_least": 3}, None),
    ],
)  # fmt: skip
def test_a_simple_condition_is_one_field_and_one_operator(
    when: dict[str, Any], expected: tuple[str, str, str] | None
) -> None:
    assert simple_condition(when) == expected


def test_a_condition_in_words() -> None:
    assert describe(DOCUMENT["rules"][1]["when"]) == (
        "event is one of Demo Requested, Demo Request Submitted"
    )
    assert describe(DOCUMENT["rules"][2]["when"]) == (
        "all of (event is Email Delivered; counted email-delivered is at least 10 times in 60 days)"
    )
    assert (
        describe({"not": {"field": "account.type", "exists": True}})
        == "not (account.type is known)"
    )
    assert describe({"field": "firmographics.employee_count", "at_least": 51, "below": 201}) == (
        "firmographics.employee_count is at least 51 and is below 201"
    )
