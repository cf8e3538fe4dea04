"""Loading the scoring rules file: a bad file is refused with the file and the field named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.score.rules import DEFAULT_RULES_FILE, RulesFileError, load_rules
from tests.unit.builders import page_view, profile

pytestmark = pytest.mark.unit

RULE_HEADER = """\
version: "test-1"
thresholds: {mql_total: 60}
grades: {A: 35, B: 20, C: 10}
rules:
"""


VALID = (
    RULE_HEADER
    + """\
  - id: senior-title
    kind: fit
    points: 25
    reason: senior decision maker
    when: {title_matches: '\\b(vp|director)\\b'}
  - id: pricing-page
    kind: behaviour
    points: 15
    reason: viewed pricing
    when: {property: {name: path, contains: /pricing}}
"""
)


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_the_default_rules_file_loads() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)

    assert rules.version
    assert rules.thresholds.mql_total > 0
    assert {r.kind for r in rules.rules} == {"fit", "behaviour"}
    assert any(r.points < 0 for r in rules.rules), "negative rules filter false positives"


def test_a_valid_file_loads(tmp_path: Path) -> None:
    rules = load_rules(rules_file(tmp_path, VALID))

    assert rules.version == "test-1"
    assert [r.id for r in rules.rules] == ["senior-title", "pricing-page"]
    assert rules.rules[0].when.holds_for_profile(profile(title="VP Sales"))
    assert rules.rules[1].when.holds_for_event(page_view("/pricing"))


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        pytest.param(
            [
                "{id: demo, kind: behaviour, points: 60, reason: demo, when: {event: Demo Requested}}",
                "{id: demo, kind: behaviour, points: 50, reason: sales, when: {event: Contact Sales}}",
            ],
            "rules",
            id="duplicate-ids",
        ),
        pytest.param(
            [
                "{id: demo, kind: behaviour, pointz: 60, reason: demo, when: {event: Demo Requested}}"
            ],
            "rules.0.pointz",
            id="unknown-rule-field",
        ),
        pytest.param(
            ["{id: demo, kind: behaviour, points: 60, reason: demo, when: {evnt: Demo Requested}}"],
            "rules.0.when.evnt",
            id="unknown-condition-field",
        ),
        pytest.param(
            ["{id: vp, kind: fit, points: 25, reason: vp, when: {title_matches: '(vp|director'}}"],
            "rules.0.when.title_matches",
            id="bad-regex",
        ),
        pytest.param(
            ["{id: vp-demo, kind: fit, points: 25, reason: vp, when: {event: Demo Requested}}"],
            "rules.0",
            id="fit-rule-with-event",
        ),
        pytest.param(
            ["{id: Demo Rule, kind: behaviour, points: 60, reason: demo, when: {type: track}}"],
            "rules.0.id",
            id="id-not-a-slug",
        ),
        pytest.param(
            ["{id: demo, kind: behavior, points: 60, reason: demo, when: {type: track}}"],
            "rules.0.kind",
            id="unknown-kind",
        ),
        pytest.param(
            ["{id: demo, kind: behaviour, points: 6000, reason: demo, when: {type: track}}"],
            "rules.0.points",
            id="points-out-of-range",
        ),
        pytest.param(
            ["{id: demo, kind: behaviour, points: 60, reason: demo, when: {type: click}}"],
            "rules.0.when.type",
            id="unknown-call-type",
        ),
    ],
)
def test_a_bad_rule_names_the_file_and_the_field(
    tmp_path: Path, rules: list[str], field: str
) -> None:
    path = rules_file(tmp_path, RULE_HEADER + "".join(f"  - {rule}\n" for rule in rules))

    with pytest.raises(RulesFileError) as refused:
        load_rules(path)

    message = str(refused.value)
    assert message.startswith(f"{path}: ")
    assert f"{field}: " in message


def test_duplicate_ids_are_named(tmp_path: Path) -> None:
    text = VALID + VALID[VALID.index("  - id: pricing-page") :]

    with pytest.raises(RulesFileError, match="pricing-page"):
        load_rules(rules_file(tmp_path, text))


def test_a_fit_rule_looking_at_events_says_what_fit_rules_may_use(tmp_path: Path) -> None:
    text = RULE_HEADER + "  - {id: vp, kind: fit, points: 25, reason: vp, when: {type: track}}\n"

    with pytest.raises(RulesFileError, match="a fit rule looks at the profile only"):
        load_rules(rules_file(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        pytest.param(
            VALID.replace("thresholds:", "threshold:"), "threshold", id="unknown-top-level"
        ),
        pytest.param(VALID.replace('version: "test-1"\n', ""), "version", id="missing-version"),
        pytest.param(
            VALID.replace("grades: {A: 35, B: 20, C: 10}", "grades: {A: 35, B: 20}"),
            "grades.C",
            id="missing-grade",
        ),
        pytest.param(
            VALID.replace("mql_total: 60", "mql_total: sixty"),
            "thresholds.mql_total",
            id="threshold-not-a-number",
        ),
    ],
)
def test_a_bad_document_names_the_file_and_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = rules_file(tmp_path, text)

    with pytest.raises(RulesFileError) as refused:
        load_rules(path)

    assert str(refused.value).startswith(f"{path}: ")
    assert f"{field}: " in str(refused.value)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("rules: [\n  - {id: demo\n", id="not-yaml"),
        pytest.param("version: 'a\n", id="unterminated-string"),
        pytest.param("", id="empty"),
        pytest.param("- just\n- a list\n", id="a-list"),
        pytest.param("just some words\n", id="a-string"),
    ],
)
def test_a_file_that_is_not_a_rules_document_names_the_file(tmp_path: Path, text: str) -> None:
    path = rules_file(tmp_path, text)

    with pytest.raises(RulesFileError, match=f"^{re.escape(str(path))}: "):
        load_rules(path)


def test_a_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = rules_file(tmp_path, VALID.replace("reason: viewed pricing", "reason: [viewed pricing"))

    with pytest.raises(RulesFileError, match=r"line \d+"):
        load_rules(path)


def test_a_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(RulesFileError, match=f"^{re.escape(str(path))}: "):
        load_rules(path)
