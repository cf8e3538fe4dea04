"""Rules a model proposes (`proposals.propose_rules`): the live file with points that follow what
was learned, flags where a rule hurts or taught nothing, and new rules for the strong facts no
rule reads, as a file the rules validator accepts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.score.engine.conditions import facts_of
from services.score.engine.ruleset import RuleSet, parse_rules
from services.score.learning.features import describe
from services.score.learning.model import (
    Evaluation,
    LikelihoodModel,
    ModelFeature,
    Ranking,
    TrainingWindow,
)
from services.score.learning.outcomes import OutcomePolicy
from services.score.learning.proposals import (
    MIN_NEW_POINTS,
    NothingToPropose,
    Proposal,
    _rounded,
    proposable,
    propose_rules,
)
from tests.unit.builders import enriched_event, page_view, track
from tests.unit.test_learning_training import LIVE, world_model

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def facts(**fields: Any) -> dict[str, Any]:
    """The facts of one real enriched event, as the rules read them."""
    return facts_of(enriched_event(identified=True, **fields))


def holds(rules: RuleSet, rule_id: str, event_facts: dict[str, Any]) -> bool:
    return next(rule for rule in rules.rules if rule.id == rule_id).when.holds(event_facts)


# --- on the world ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world() -> tuple[LikelihoodModel, Proposal, RuleSet]:
    model = world_model()
    proposal = propose_rules(model, LIVE, model_version="7")
    print("\n" + "\n".join(
        f"  {c.rule_id:45} {c.current if c.current is not None else 'new':>5} -> "
        f"{c.proposed:+5d} {'; '.join(c.flags)}"
        for c in proposal.changes
    ))  # fmt: skip
    return model, proposal, parse_rules(proposal.text, source="proposed rules")


def test_the_proposed_file_passes_the_validator_and_keeps_the_live_thresholds(
    world: tuple[LikelihoodModel, Proposal, RuleSet],
) -> None:
    _, proposal, proposed = world

    assert proposal.version == proposed.version == f"{LIVE.version}+model-7"
    assert (proposed.caps, proposed.grades, proposed.bands, proposed.mql, proposed.lifecycle) == (
        LIVE.caps, LIVE.grades, LIVE.bands, LIVE.mql, LIVE.lifecycle,
    )  # fmt: skip
    assert [g for g in proposed.groups if g.id in {g.id for g in LIVE.groups}] == LIVE.groups
    live = {rule.id: rule for rule in LIVE.rules}
    kept = [rule for rule in proposed.rules if rule.id in live]
    assert [rule.id for rule in kept] == list(live)  # every live rule, in its order
    assert [(r.group, r.when, r.limit) for r in kept] == [
        (r.group, r.when, r.limit) for r in LIVE.rules
    ]  # only points change


def test_existing_rules_keep_the_learned_sign_scaled_so_the_strongest_gets_the_largest_points(
    world: tuple[LikelihoodModel, Proposal, RuleSet],
) -> None:
    model, proposal, proposed = world
    learned = {
        f.name.removeprefix("rule:"): f for f in model.proposal if f.name.startswith("rule:")
    }
    fired = [rule for rule in LIVE.rules if rule.id in learned and rule.points]
    largest = max(abs(rule.points) for rule in fired)
    strongest = max(fired, key=lambda rule: abs(learned[rule.id].weight))
    points = {rule.id: rule.points for rule in proposed.rules}
    followed = [rule for rule in fired if learned[rule.id].stable]

    assert learned[strongest.id].stable
    assert points[strongest.id] == (largest if learned[strongest.id].weight > 0 else -largest)
    for rule in followed:
        assert points[rule.id] == 0 or (points[rule.id] > 0) == (learned[rule.id].weight > 0)
    for a in followed:  # a stronger effect never gets fewer points
        for b in followed:
            if abs(learned[a.id].weight) > abs(learned[b.id].weight):
                assert abs(points[a.id]) >= abs(points[b.id]), (a.id, b.id)
    changed = {c.rule_id: c for c in proposal.changes}
    assert [changed[rule.id].proposed for rule in followed] == [points[r.id] for r in followed]


def test_a_rule_no_training_lead_earned_is_kept_as_it_is_and_flagged(
    world: tuple[LikelihoodModel, Proposal, RuleSet],
) -> None:
    model, proposal, proposed = world
    learned = {f.name for f in model.proposal} | set(model.uninformative)
    never = [r for r in LIVE.rules if r.points and f"rule:{r.id}" not in learned]
    changed = {c.rule_id: c for c in proposal.changes}
    points = {rule.id: rule.points for rule in proposed.rules}

    assert "contact-sales" in {rule.id for rule in never}  # no lead of the world contacts sales
    for rule in never:
        assert changed[rule.id].flags == (
            "never fired for a training lead, or too rarely to learn from: kept as it is",
        )
        assert changed[rule.id].proposed == changed[rule.id].current == points[rule.id]
        assert (
            f"  # never fired for a training lead, or too rarely to learn from: kept as it is\n  - id: {rule.id}\n"
            in (proposal.text)
        )


def test_a_rule_is_flagged_as_hurting_exactly_when_its_points_have_the_other_sign(
    world: tuple[LikelihoodModel, Proposal, RuleSet],
) -> None:
    _, proposal, _ = world
    existing = [c for c in proposal.changes if c.current is not None]

    for change in existing:
        assert change.current is not None
        other_sign = change.proposed != 0 and (change.proposed > 0) != (change.current > 0)
        assert any(flag.startswith("hurts:") for flag in change.flags) == other_sign, change


def test_a_rule_whose_learned_effect_contradicts_its_points_is_flagged_as_hurting() -> None:
    model = hand_model(weight("rule:demo-request", 1.0), weight("rule:vp", -0.5))
    changed = {c.rule_id: c for c in propose_rules(model, LIVE, model_version="1").changes}

    assert changed["vp"].proposed == -30  # -0.5 x 60 / 1.0
    assert changed["vp"].flags == (
        "hurts: gives +25, but leads it counted for converted less than others",
    )
    assert (changed["demo-request"].proposed, changed["demo-request"].flags) == (60, ())


def test_new_rules_are_proposed_for_the_strong_facts_no_rule_reads(
    world: tuple[LikelihoodModel, Proposal, RuleSet],
) -> None:
    _, proposal, proposed = world
    new = {c.rule_id: c for c in proposal.changes if c.current is None}
    calculator, docs = "learned-event-pricing-calculator-used", "learned-page-docs"

    assert {calculator, docs} <= new.keys()
    assert new[calculator].proposed >= new[docs].proposed >= MIN_NEW_POINTS
    assert new[calculator].reason == "did 'pricing calculator used'"
    assert holds(proposed, calculator, facts_of(track("Pricing Calculator Used")))
    assert not holds(proposed, calculator, facts_of(track("Demo Requested")))
    assert holds(proposed, docs, facts_of(page_view("/docs/getting-started")))
    assert holds(proposed, docs, facts_of(page_view("/docs")))
    assert not holds(proposed, docs, facts_of(page_view("/documentation")))
    assert not holds(proposed, docs, facts_of(page_view("/pricing")))
    groups = {rule.id: rule.group for rule in proposed.rules}
    assert groups[calculator] == groups[docs] == "learned-behaviour"
    # nothing a rule already reads, nothing seen only after the outcome
    assert not [i for i in new if "demo" in i or "seniority" in i or "onboarding" in i]


# --- by hand --------------------------------------------------------------------------------

RANKING = Ranking(auc=0.7, lift_top_decile=2.0, brier=0.1, reliability=[], roc=[], gains=[])


def hand_model(*proposal: ModelFeature, uninformative: tuple[str, ...] = ()) -> LikelihoodModel:
    """A model whose proposal fit is `proposal` (its other parts matter not to proposals)."""
    return LikelihoodModel(
        trained_at=T, trained_by="tests", rules_version=LIVE.version, policy=OutcomePolicy(),
        windows_days=(7, 30), intercept=-2.0, features=[],
        training=TrainingWindow(leads=1000, positives=150, first_cutoff=T, last_cutoff=T),
        evaluation=Evaluation(test_leads=300, test_positives=40, first_cutoff=T,
                              last_cutoff=T, model=RANKING, rules=RANKING),
        proposal=list(proposal), uninformative=list(uninformative),
    )  # fmt: skip


def weight(name: str, value: float, *, stable: bool = True) -> ModelFeature:
    return ModelFeature(
        name=name, weight=value, description=describe(name, LIVE), support=120, stable=stable
    )


DEMO = weight("rule:demo-request", 1.0)  # 60 live points: one unit of weight is 60 points


@pytest.mark.parametrize(
    ("feature", "holds_for", "not_for"),
    [
        (
            "event:pricing calculator used@ever",
            facts(type="track", event="Pricing Calculator Used"),
            facts(type="track", event="Pricing Viewed"),
        ),
        (
            "page:/docs@7d",
            facts(type="page", properties={"path": "/docs/api"}),
            facts(type="page", properties={"path": "/docsearch"}),
        ),
        (
            "page:pricing@ever",  # a page call with a name and no path
            facts(type="page", name="Pricing"),
            facts(type="page", name="Careers"),
        ),
        (
            "screen:dashboard@ever",
            facts(type="screen", name="Dashboard"),
            facts(type="page", name="Dashboard"),
        ),
        (
            "origin.import_list=purchased-list",
            facts(type="identify", context={"import": {"list": "purchased-list"}}),
            facts(type="identify", context={"import": {"list": "tradeshow-2026"}}),
        ),
        (
            "origin.campaign.name=spring",
            facts(type="identify", context={"campaign": {"name": "Spring"}}),
            facts(type="identify", context={"campaign": {"name": "Autumn"}}),
        ),
        (
            "profile.title~student",
            facts(type="identify", profile={"title": "Marketing Student"}),
            facts(type="identify", profile={"title": "Studentship Officer"}),
        ),
        (
            "firmographics.employee_count~100-999",
            facts(type="identify", firmographics={"domain": "a.example", "employee_count": 999}),
            facts(type="identify", firmographics={"domain": "a.example", "employee_count": 1000}),
        ),
        (
            "firmographics.industry=financial services",
            facts(
                type="identify",
                firmographics={"domain": "a.example", "industry": "Financial Services"},
            ),
            facts(type="identify", firmographics={"domain": "a.example", "industry": "Software"}),
        ),
        (
            "profile.free_mail=true",
            facts(type="identify", profile={"free_mail": True}),
            facts(type="identify", profile={"free_mail": False}),
        ),
    ],
)
def test_a_new_rule_holds_for_the_events_its_fact_was_learned_from(
    feature: str, holds_for: dict[str, Any], not_for: dict[str, Any]
) -> None:
    proposal = propose_rules(hand_model(DEMO, weight(feature, 0.5)), LIVE, model_version="1")
    [new] = [c for c in proposal.changes if c.current is None]
    proposed = parse_rules(proposal.text, source="proposed rules")

    assert new.proposed == 30
    assert holds(proposed, new.rule_id, holds_for)
    assert not holds(proposed, new.rule_id, not_for)


def test_a_behaviours_windows_add_up_to_one_new_rule() -> None:
    model = hand_model(
        DEMO, weight("page:/docs@ever", 0.2), weight("page:/docs@30d", 0.2),
        weight("page:/docs@7d", -0.1),
    )  # fmt: skip
    [new] = [c for c in propose_rules(model, LIVE, model_version="1").changes if c.current is None]

    assert (new.rule_id, new.proposed, new.reason) == ("learned-page-docs", 20, "visited /docs")


@pytest.mark.parametrize(
    "unstable",
    [
        [weight("event:pricing calculator used@ever", 1.5, stable=False)],
        [weight("profile.title~student", -1.5, stable=False)],
        [  # a behaviour is stable only when each of its windows is
            weight("page:/docs@ever", 0.8),
            weight("page:/docs@7d", 0.4, stable=False),
        ],
    ],
)
def test_an_unstable_weight_proposes_no_new_rule(unstable: list[ModelFeature]) -> None:
    model = hand_model(DEMO, *unstable)
    stable = hand_model(DEMO, *[f.model_copy(update={"stable": True}) for f in unstable])

    assert [
        c for c in propose_rules(model, LIVE, model_version="1").changes if c.current is None
    ] == []
    assert [c for c in propose_rules(stable, LIVE, model_version="1").changes if c.current is None]


def test_an_existing_rule_with_an_unstable_weight_is_kept_as_it_is_and_flagged() -> None:
    model = hand_model(DEMO, weight("rule:vp", -2.0, stable=False))
    changed = {c.rule_id: c for c in propose_rules(model, LIVE, model_version="1").changes}

    assert (changed["vp"].current, changed["vp"].proposed) == (25, 25)
    assert changed["vp"].flags == (
        "uncertain: the older and the newer training leads disagree on its effect: kept as it is",
    )


def test_a_rule_counted_alike_for_every_lead_is_kept_and_says_so() -> None:
    model = hand_model(DEMO, uninformative=("rule:served-market",))
    changed = {c.rule_id: c for c in propose_rules(model, LIVE, model_version="1").changes}

    assert changed["served-market"].flags == (
        "counted alike for every training lead, so nothing was learned of it: kept",
    )
    assert changed["served-market"].proposed == 5


def test_a_weak_fact_proposes_no_new_rule() -> None:
    model = hand_model(DEMO, weight("page:/docs@ever", (MIN_NEW_POINTS - 1) / 60))

    assert [
        c for c in propose_rules(model, LIVE, model_version="1").changes if c.current is None
    ] == []


@pytest.mark.parametrize(
    "proposal",
    [
        [],  # nothing learned at all
        [weight("event:pricing calculator used@ever", 1.0)],  # only facts no rule reads
        [weight("rule:email-delivered", 1.0)],  # a 0-point tally: no scale in it
    ],
)
def test_nothing_to_propose_when_no_rule_with_points_counted(proposal: list[ModelFeature]) -> None:
    with pytest.raises(NothingToPropose):
        propose_rules(hand_model(*proposal), LIVE, model_version="1")


@pytest.mark.parametrize(
    ("points", "rounded"),
    [
        (0.0, 0),
        (0.4, 0),
        (-0.6, -1),
        (7.4, 7),
        (9.6, 10),
        (10.0, 10),
        (12.4, 10),  # fives from 10 up
        (12.6, 15),
        (-12.6, -15),
        (57.0, 55),
        (999.0, 1000),
        (2000.0, 1000),  # within the validator's +-1000
        (-5000.0, -1000),
    ],
)
def test_points_are_rounded_to_whole_points_and_to_fives_from_ten_up(
    points: float, rounded: int
) -> None:
    assert _rounded(points) == rounded


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ("event:pricing calculator used@7d", True),  # no rule counted for it
        ("event:demo requested@ever", False),  # demo-request did
        ("page:/docs@30d", True),
        ("page:/pricing@ever", False),
        ("profile.title~student", True),  # no rule reads the title
        ("profile.seniority=vp", False),
        ("firmographics.employee_count~1-9", False),
        ("origin.import_list=purchased-list", True),
        ("origin.source=website", True),
        ("rule:vp", False),  # the rules' own awards are fitted anyway
        ("rules.fit", False),
    ],
)
def test_a_fact_is_proposable_when_no_live_rule_reads_it(feature: str, expected: bool) -> None:
    covered = {"event:demo requested", "page:/pricing"}

    assert proposable(feature, LIVE, covered) is expected
