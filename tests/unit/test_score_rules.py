"""Loading the scoring rules file: a bad file is refused with the file, line and field named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.score.engine.ruleset import (
    DEFAULT_RULES_FILE,
    RulesFileError,
    load_rules,
    parse_rules,
)

HEADER = """\
version: "test-1"
groups:
  - {id: persona, kind: fit}
  - {id: intent, kind: behaviour, decay: {half_life_days: 30}}
grades: {A: 35, B: 20, C: 10}
bands: {"1": 60, "2": 30, "3": 10}
mql: {min_total: 60}
rules:
"""
VALID = (
    HEADER
    + """\
  - id: vp
    group: persona
    points: 25
    reason: senior decision maker
    when: {field: profile.seniority, in: [vp, c-level]}
  - id: pricing-page
    group: intent
    points: 15
    reason: viewed pricing
    when: {field: page.path, regex: '^/pricing'}
"""
)


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_the_default_rules_file_loads() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    assert rules.version
    assert {g.kind for g in rules.groups} == {"fit", "behaviour"}
    assert any(r.points < 0 for r in rules.rules), "negative rules filter false positives"


def test_a_valid_file_loads(tmp_path: Path) -> None:
    rules = load_rules(rules_file(tmp_path, VALID))
    assert [r.id for r in rules.rules] == ["vp", "pricing-page"]
    assert rules.rules[0].when.holds({"profile.seniority": "VP"})
    assert rules.rules[1].when.holds({"page.path": "/pricing/teams"})


@pytest.mark.parametrize(
    ("rule", "line", "field"),
    [
        pytest.param(
            "{id: demo, group: intent, pointz: 60, reason: d, when: {field: event, equals: D}}",
            9,
            "rules.0.pointz",
            id="unknown-rule-field",
        ),
        pytest.param(
            "{id: demo, group: intent, points: 60, reason: d, when: {fild: event, equals: D}}",
            9,
            "rules.0.when.test.fild",
            id="unknown-condition-field",
        ),
        pytest.param(
            "{id: demo, group: intent, points: 60, reason: d, when: {field: event, regex: '(a'}}",
            9,
            "rules.0.when.test.regex",
            id="bad-regex",
        ),
        pytest.param(
            "{id: Demo Rule, group: intent, points: 60, reason: d, when: {field: event, equals: D}}",
            9,
            "rules.0.id",
            id="id-not-a-slug",
        ),
        pytest.param(
            "{id: demo, group: intent, points: 6000, reason: d, when: {field: event, equals: D}}",
            9,
            "rules.0.points",
            id="points-out-of-range",
        ),
        pytest.param(
            "{id: demo, group: intent, points: 60, reason: d, when: {all: [{field: event}]}}",
            9,
            "rules.0.when.all.all.0",
            id="test-without-operator",
        ),
    ],
)
def test_a_bad_rule_names_file_line_and_field(
    tmp_path: Path, rule: str, line: int, field: str
) -> None:
    path = rules_file(tmp_path, HEADER + f"  - {rule}\n")
    with pytest.raises(RulesFileError) as refused:
        load_rules(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ")
    assert f"line {line}: {field}" in message


def test_consistency_problems_are_all_named(tmp_path: Path) -> None:
    text = VALID + (
        "  - {id: vp, group: nowhere, points: 1, reason: r, when: {field: event, equals: a}}\n"
        "  - {id: vp-demo, group: persona, points: 1, reason: r, when: {field: event, equals: a}}\n"
    )
    with pytest.raises(RulesFileError) as refused:
        load_rules(rules_file(tmp_path, text))
    message = str(refused.value)
    assert "rule id 'vp' is used twice" in message
    assert "unknown group 'nowhere'" in message
    assert "rule vp-demo: a fit rule may only read" in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("rules: [\n  - {id: demo\n", id="not-yaml"),
        pytest.param("", id="empty"),
        pytest.param("- just\n- a list\n", id="a-list"),
    ],
)
def test_a_file_that_is_not_a_rules_document_names_the_file(tmp_path: Path, text: str) -> None:
    path = rules_file(tmp_path, text)
    with pytest.raises(RulesFileError, match=f"^{re.escape(str(path))}: "):
        load_rules(path)


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(RulesFileError, match=f"^{re.escape(str(path))}: "):
        load_rules(path)


def test_rules_in_hand_name_their_source_line_and_field() -> None:
    """As a request body (the simulate endpoint): the same checks, the source named."""
    assert parse_rules(VALID, source="request body").version == "test-1"
    bad = HEADER + "  - {id: x, group: intent, points: 5, reason: r, when: {count: vp}}\n"
    with pytest.raises(RulesFileError) as refused:
        parse_rules(bad, source="request body")
    assert str(refused.value).startswith("request body: line 9: rules.0.when.count")
    assert "a count needs at_least and/or below" in str(refused.value)
