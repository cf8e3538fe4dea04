"""A rules file, a candidate posted to score's simulate endpoint included, cannot stall score:
each test is named after an attack on today's code and shows it refused or bounded.

An attack on the old code held the GIL in one C call (a backtracking `re` match, a pydantic
validation), which neither a thread's timeout nor a signal interrupts: those run in a forked
child that is killed when it overstays (`finishes_within`), so such a test fails, not hangs.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.router.routing_config import DEFAULT_ROUTING_FILE, RoutingFileError, load_routing
from services.score import lookups
from services.score.engine.conditions import FieldTest, facts_of
from services.score.engine.rescoring import HistoryItem, LeadHistory
from services.score.engine.ruleset import (
    DEFAULT_RULES_FILE,
    RuleSet,
    RulesFileError,
    load_rules,
    parse_rules,
)
from shared.config_files import MAX_DEPTH, MAX_DOCUMENT_CHARS
from shared.contracts import Stage
from tests.unit.builders import enriched_event

pytestmark = pytest.mark.unit

HEADER = """\
version: "test-1"
groups:
  - {id: persona, kind: fit}
  - {id: intent, kind: behaviour}
grades: {A: 35, B: 20, C: 10}
bands: {"1": 60, "2": 30, "3": 10}
mql: {min_total: 60}
rules:
"""
FIRST_RULE_LINE = 9


def finishes_within(seconds: float, work: Callable[[], object]) -> bool:
    """Whether `work` returns within `seconds`, run in a forked child that is killed when it
    does not; the test fails if `work` raised."""
    child = multiprocessing.get_context("fork").Process(target=work, daemon=True)
    child.start()
    child.join(seconds)
    if child.is_alive():
        child.kill()
        child.join()
        return False
    assert child.exitcode == 0, "the work raised in the child (its traceback is above)"
    return True


def refusal(text: str) -> str:
    with pytest.raises(RulesFileError) as refused:
        parse_rules(text, source="candidate.yaml")
    return str(refused.value)


def alias_bomb(levels: int) -> str:
    """A rule whose condition is `any` of 10 copies of `any` of 10 copies ... of one test,
    written with aliases: a few hundred characters that validate as 10**levels tests."""
    condition = "&c0 {field: event, equals: lol}"
    for level in range(1, levels + 1):
        condition = f"&c{level} {{any: [{condition}{f', *c{level - 1}' * 9}]}}"
    return HEADER + f"  - {{id: bomb, group: intent, points: 1, reason: r, when: {condition}}}\n"


def test_a_yaml_alias_bomb_is_refused_within_a_second() -> None:
    bomb = alias_bomb(levels=8)
    assert len(bomb) < 1_000
    assert finishes_within(1.0, lambda: refusal(bomb)), "an alias bomb still validates"
    message = refusal(bomb)
    assert message.startswith(f"candidate.yaml: line {FIRST_RULE_LINE}: rules.0.when: ")
    assert "anchors and aliases (&name, *name) are not allowed" in message


def test_a_routing_file_with_an_anchor_is_refused_with_its_line(tmp_path: Path) -> None:
    text = DEFAULT_ROUTING_FILE.read_text()
    version = next(n for n, line in enumerate(text.splitlines(), 1) if line.startswith("version: "))
    anchored = tmp_path / "routing.yaml"
    anchored.write_text(text.replace("version: ", "version: &v ", 1))
    with pytest.raises(RoutingFileError) as refused:
        load_routing(anchored)
    assert str(refused.value).startswith(f"{anchored}: line {version}: version: anchors and")


def test_a_document_over_the_size_limit_is_refused_unread() -> None:
    message = refusal("#" * (MAX_DOCUMENT_CHARS + 1))
    assert message == (
        f"candidate.yaml: {MAX_DOCUMENT_CHARS + 1} characters; a rules or routing file is at "
        f"most {MAX_DOCUMENT_CHARS}"
    )


def test_a_document_nested_past_the_limit_is_refused_not_a_crash() -> None:
    """A few thousand brackets used to overflow the YAML composer's recursion (RecursionError,
    an answer 500), and a `not` nested that deep the validator's."""
    deep = HEADER + "  - " + "[" * 5_000 + "]" * 5_000 + "\n"
    message = refusal(deep)
    assert f"line {FIRST_RULE_LINE}: rules.0" in message
    assert f"nested more than {MAX_DEPTH} levels deep" in message


def test_a_number_too_long_to_read_is_refused_not_a_crash() -> None:
    """Python reads at most 4300 digits into an int: a longer one was a ValueError out of the
    loader (an answer 500), not a refusal."""
    message = refusal(HEADER.replace('version: "test-1"', "version: " + "1" * 5_000))
    assert message.startswith("candidate.yaml: Exceeds the limit (4300 digits)")


def test_many_rules_validate_in_linear_time() -> None:
    """Up to the size limit: every rule names its own event (the candidates index was names
    x rules), and each counts the one before (the check of counts was rules x rules)."""
    rules = [
        f"  - {{id: r{n}, group: intent, points: 1, reason: r, when: {{all: "
        f"[{{field: event, equals: e{n}}}, {{count: r{max(n - 1, 0)}, at_least: 1}}]}}}}\n"
        for n in range(7_500)
    ]
    text = HEADER + "".join(rules)
    assert len(text) < MAX_DOCUMENT_CHARS

    def load_and_index() -> None:
        candidates = parse_rules(text, source="candidate.yaml").behaviour_candidates
        assert [rule.id for rule in candidates({"event": "E7"})] == ["r7"]

    assert finishes_within(10.0, load_and_index)


CATASTROPHIC = "(a+)+$"


def test_a_catastrophic_regex_matches_a_long_text_in_linear_time() -> None:
    """`(a+)+$` against "aaa...a!" backtracks 2**n ways in Python's `re`; RE2 is linear."""
    rules = parse_rules(
        HEADER + "  - {id: evil, group: intent, points: 1, reason: r, "
        f"when: {{field: page.path, regex: '{CATASTROPHIC}'}}}}\n",
        source="candidate.yaml",
    )
    condition = rules.rules[0].when
    text = "a" * 50_000 + "!"
    assert finishes_within(1.0, lambda: condition.holds({"page.path": text})), "backtracks"
    started = time.perf_counter()
    assert condition.holds({"page.path": text}) is False
    assert condition.holds({"page.path": "a" * 50_000}) is True
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        pytest.param(r"^(\w+)-\1$", "invalid escape sequence", id="backreference"),
        pytest.param("^/pricing(?=/)", "invalid perl operator", id="lookahead"),
        pytest.param("(?<!/docs)/pricing", "invalid perl operator", id="lookbehind"),
        pytest.param("(a", "missing", id="unbalanced"),
    ],
)
def test_a_pattern_re2_cannot_run_is_refused_with_its_line_and_reason(
    pattern: str, reason: str
) -> None:
    message = refusal(
        HEADER + "  - {id: p, group: intent, points: 1, reason: r,\n"
        f"     when: {{field: page.path, regex: '{pattern}'}}}}\n"
    )
    assert message.startswith(
        f"candidate.yaml: line {FIRST_RULE_LINE + 1}: rules.0.when.test.regex: "
    )
    assert "not a regular expression RE2 can run" in message
    assert reason in message


@pytest.mark.parametrize(
    ("pattern", "text", "holds"),
    [
        # searched anywhere in the text, as the shipped rules expect
        ("pricing", "/en/pricing/teams", True),
        # anchored where the pattern says so
        ("^/(pricing|plans)(/|$)", "/pricing", True),
        ("^/(pricing|plans)(/|$)", "/pricingx", False),
        ("^/(pricing|plans)(/|$)", "/en/pricing", False),
        # case is ignored, as by every text test
        ("^/PRICING", "/Pricing/teams", True),
        ("straße", "STRASSE", False),  # simple case folding, as Python's re.IGNORECASE
        ("^é", "É", True),
        # numbers are tested as their text
        (r"^\d{3}$", 250, True),
    ],
)
def test_regex_semantics_are_kept(pattern: str, text: object, holds: bool) -> None:
    assert FieldTest(field="f", regex=pattern).holds({"f": text}) is holds


def test_the_shipped_regex_rules_still_hold_where_they_did() -> None:
    rules = load_rules(DEFAULT_RULES_FILE)
    pricing = next(r for r in rules.rules if "pricing" in (getattr(r.when, "regex", "") or ""))
    assert pricing.when.holds({"page.path": "/pricing"})
    assert pricing.when.holds({"page.path": "/plans/enterprise"})
    assert not pricing.when.holds({"page.path": "/blog/pricing"})


def test_patterns_from_many_candidates_are_not_kept_after_them() -> None:
    """Every simulated candidate may bring new patterns: none outlives its rule set (a
    process-wide cache of compiled patterns grew with each one, for ever)."""

    def live_patterns() -> int:
        gc.collect()
        # re's compiled patterns, and this engine's (its RE2 objects are no Python containers)
        return sum(type(o).__name__ in {"Pattern", "_Regex"} for o in gc.get_objects())

    before = live_patterns()
    for n in range(2_000):
        test = FieldTest(field="page.path", regex=f"^/campaign-{n}(/|$)")
        assert test.holds({"page.path": f"/campaign-{n}"})
    del test
    assert live_patterns() - before < 100


def test_a_condition_is_equal_to_one_that_says_the_same() -> None:
    assert FieldTest(field="f", regex="^a") == FieldTest(field="f", regex="^a")
    assert FieldTest(field="f", regex="^a") != FieldTest(field="f", regex="^b")


T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def stored_leads(count: int, *, events: int) -> list[LeadHistory]:
    facts = facts_of(enriched_event(identified=True, event="Webinar Attended"))
    items = [
        HistoryItem(f"m{n}", T0 + timedelta(hours=n), facts, behaviour=True) for n in range(events)
    ]
    return [LeadHistory(f"lead-{n}", Stage.LEAD, True, items) for n in range(count)]


async def test_a_simulation_past_its_time_budget_stops_with_how_far_it_got(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    leads = stored_leads(10_000, events=20)

    async def histories(_sessions: object, *, batch: int = 500) -> AsyncIterator[list[Any]]:
        for start in range(0, len(leads), batch):
            yield leads[start : start + batch]

    monkeypatch.setattr(lookups, "lead_histories", histories)
    rules = load_rules(DEFAULT_RULES_FILE)
    started = time.monotonic()
    with pytest.raises(lookups.SimulationTimedOut) as stopped:
        await lookups.simulate_stored(
            None,  # type: ignore[arg-type]  # the histories are the ones above
            live=rules,
            candidate=rules,
            at=T0,
            deadline_s=0.2,
        )
    assert time.monotonic() - started < 0.2 + 0.5
    assert 0 < stopped.value.leads < len(leads)
    assert str(stopped.value).startswith(
        f"the simulation stopped at its time budget of 0.2 s, after comparing "
        f"{stopped.value.leads} lead"
    )


async def test_a_candidate_is_validated_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_thread = threading.current_thread()
    validated_in: list[threading.Thread] = []

    def parse(text: str, *, source: str) -> RuleSet:
        validated_in.append(threading.current_thread())
        return parse_rules(text, source=source)

    monkeypatch.setattr(lookups, "parse_rules", parse)
    candidate = await lookups.parse_candidate(DEFAULT_RULES_FILE.read_text())
    assert candidate.version == load_rules(DEFAULT_RULES_FILE).version
    assert validated_in
    assert validated_in[0] is not loop_thread
    with pytest.raises(RulesFileError, match=r"^request body: line 9: rules.0.when"):
        await lookups.parse_candidate(alias_bomb(levels=2))
