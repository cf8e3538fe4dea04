"""Training (`training.train`): enough outcomes or a refusal that says what is missing, a split
by time, only features worth a weight, honest metrics beside the rules'; and, on the synthetic
world of tests/fixtures/world.py, a model that ranks better than the rules, is calibrated and
recovers the hidden truth."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from services.score.engine.conditions import facts_of
from services.score.engine.rescoring import HistoryItem
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.learning.examples import Example, lead_example
from services.score.learning.features import describe
from services.score.learning.model import LikelihoodModel, Scorer
from services.score.learning.outcomes import Labelled
from services.score.learning.settings import TrainingSettings
from services.score.learning.training import Examples, TrainingRefused, ranking, train
from tests.fixtures import world
from tests.unit.builders import enriched_event

START = datetime(2026, 1, 5, tzinfo=UTC)
NOW = START + timedelta(days=400)
SMALL = TrainingSettings(min_outcomes=200, min_positives=30, min_support=5)

Row = tuple[dict[str, float], bool, float]  # features, converted, the day of its cut-off


def examples(rows: Iterable[Row], *, contradicting: int = 0) -> Examples:
    """Labelled leads from rows, a conversion known 10 days after the cut-off and the contrary
    at the end of a 90-day horizon; the first `contradicting` had both a win and a loss."""
    found = Examples()
    for index, (features, positive, cutoff_day) in enumerate(rows):
        cutoff = START + timedelta(days=cutoff_day)
        decided = cutoff + timedelta(days=10 if positive else 90)
        found.add(
            features,
            label=Labelled(positive, cutoff, decided, index < contradicting),
            rules_total=100 * features.get("rules.fit", 0.0),
        )
    return found


def leads(
    count: int, *, positives: Callable[[int], bool] | None = None, seed: int = 1
) -> list[Row]:
    """`count` leads, their cut-offs a day apart; a third did `event:signal`, which raises their chance to
    convert from 10% to 60% (or `positives(index)` decides). Every lead has a fit score and
    half of them read the blog; `rule:signal-rule` counted for those that did the signal."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        signal = rng.random() < 1 / 3
        converted = rng.random() < (0.6 if signal else 0.1)
        if positives is not None:
            converted = positives(index)
        features = {"rules.fit": rng.choice([0.1, 0.3, 0.5]), "page:/blog@ever": 0.0}
        if rng.random() < 0.5:
            features["page:/blog@ever"] = rng.choice([1.0, math.log2(3)])
        if signal:
            features["event:signal@ever"] = 1.0
            features["rule:signal-rule"] = 1.0
        rows.append((features, converted, float(index)))
    return rows


def trained(
    found: Examples,
    settings: TrainingSettings = SMALL,
    proposable: Callable[[str], bool] = lambda feature: True,
    notes: Iterable[str] = (),
) -> LikelihoodModel:
    return train(
        found, settings=settings, describe=describe, proposable=proposable,
        rules_version="test-1", trained_by="tests", now=NOW, notes=list(notes),
    )  # fmt: skip


# --- enough outcomes, or a refusal that says what is missing --------------------------------


@pytest.mark.parametrize(
    ("count", "converted", "missing"),
    [
        (150, 40, ["50 more leads with an outcome (have 150, need 200)"]),
        (250, 20, ["10 more conversions (have 20, need 30)"]),
        (
            150,
            20,
            [
                "50 more leads with an outcome (have 150, need 200)",
                "10 more conversions (have 20, need 30)",
            ],
        ),
        (
            0,
            0,
            [
                "200 more leads with an outcome (have 0, need 200)",
                "30 more conversions (have 0, need 30)",
            ],
        ),
    ],
)
def test_training_refuses_below_the_minimums_and_says_how_many_more_are_needed(
    count: int, converted: int, missing: list[str]
) -> None:
    rows = leads(count, positives=lambda index: index < converted)
    assert sum(positive for _, positive, _ in rows) == converted

    with pytest.raises(TrainingRefused) as refused:
        trained(examples(rows))

    assert str(refused.value) == "not enough outcomes to learn from: " + "; ".join(missing)


def test_training_refuses_when_every_lead_converted() -> None:
    with pytest.raises(TrainingRefused) as refused:
        trained(examples(leads(250, positives=lambda index: True)))

    assert str(refused.value) == (
        "all 250 leads with an outcome converted: leads that did not are needed too"
    )


@pytest.mark.parametrize(
    ("positives", "side"),
    [
        (lambda index: index < 60, "test"),  # the newer quarter: none converted
        (lambda index: index >= 150, "training"),  # the older leads: none converted
    ],
)
def test_training_refuses_when_one_side_of_the_time_split_holds_one_class(
    positives: Callable[[int], bool], side: str
) -> None:
    with pytest.raises(TrainingRefused) as refused:
        trained(examples(leads(200, positives=positives)))

    assert str(refused.value).startswith(f"the {side} leads (split by their cut-off)")
    assert "hold only one class" in str(refused.value)


def test_training_refuses_when_the_training_leads_hold_a_single_conversion() -> None:
    """Calibration is fitted on folds of the training leads: each needs both classes."""
    with pytest.raises(TrainingRefused, match="the training leads"):
        trained(examples(leads(200, positives=lambda index: index == 3 or index >= 160)))


# --- a split by time, and the features worth a weight ---------------------------------------


def test_the_test_leads_are_the_newest_each_cut_off_after_every_training_lead() -> None:
    """Split by the time the likelihood is about, not by when the outcome came (a conversion
    is known sooner than its contrary)."""
    rows = leads(400)
    random.Random(3).shuffle(rows)  # added in no particular order
    model = trained(examples(rows))
    window, evaluation = model.training, model.evaluation

    assert (window.leads, evaluation.test_leads) == (300, 100)
    assert window.last_cutoff <= evaluation.first_cutoff
    assert (window.first_cutoff, window.last_cutoff) == (START, START + timedelta(days=299))
    assert evaluation.first_cutoff == START + timedelta(days=300)
    assert evaluation.last_cutoff == START + timedelta(days=399)
    newest = [positive for _, positive, day in rows if day >= 300]
    assert evaluation.test_positives == sum(newest)


@pytest.mark.parametrize(
    ("feature", "value", "note"),
    [
        (
            "firmographics.country=fr",
            1.0,
            "firmographics.country: every training lead has the same value (fr), so it says "
            "nothing: left out",
        ),
        (
            "firmographics.employee_count~100-999",
            1.0,
            "firmographics.employee_count: every training lead has the same value (100-999), so "
            "it says nothing: left out",
        ),
        (
            "event:email opened@ever",
            2.0,
            "event:email opened: every training lead has it alike, so it says nothing: left out",
        ),
    ],
)
def test_a_feature_every_training_lead_has_alike_is_left_out_with_a_note_naming_it(
    feature: str, value: float, note: str
) -> None:
    rows = [({**features, feature: value}, positive, at) for features, positive, at in leads(400)]
    model = trained(examples(rows))

    assert note in model.notes
    assert model.uninformative == [feature]
    assert feature not in {f.name for f in [*model.features, *model.proposal]}
    assert "event:signal@ever" in {f.name for f in model.features}


def test_a_feature_every_lead_has_with_different_values_is_kept() -> None:
    rows = [
        ({**features, "event:email opened@ever": 1.0 + (at % 2)}, positive, at)
        for features, positive, at in leads(400)
    ]
    model = trained(examples(rows))

    assert "event:email opened@ever" in {f.name for f in model.features}
    assert model.uninformative == []


def test_a_feature_seen_in_fewer_training_leads_than_min_support_is_left_out() -> None:
    rows = leads(400)
    for index in range(SMALL.min_support):  # among the oldest: training leads
        rows[index][0]["page:/enough@ever"] = 1.0
    for index in range(SMALL.min_support - 1):
        rows[index][0]["page:/rare@ever"] = 1.0
    model = trained(examples(rows))
    names = {f.name for f in [*model.features, *model.proposal]}

    assert "page:/enough@ever" in names
    assert "page:/rare@ever" not in names
    assert f"1 features seen in fewer than {SMALL.min_support} training leads: left out" in (
        model.notes
    )


def test_rule_awards_enter_only_the_proposal_fit_and_the_rules_scores_only_the_model() -> None:
    model = trained(
        examples(leads(400)), proposable=lambda feature: not feature.startswith("page:/blog")
    )
    weights = {f.name: f.weight for f in model.features}
    proposal = {f.name: f.weight for f in model.proposal}

    assert set(weights) == {"rules.fit", "page:/blog@ever", "event:signal@ever"}
    assert set(proposal) == {"rule:signal-rule", "event:signal@ever"}  # no rule reads the blog
    assert weights["event:signal@ever"] > 1  # the odds of 60% over 10%: log 13.5, about 2.6
    assert proposal["rule:signal-rule"] > 0
    assert [f.weight for f in model.features] == sorted(
        (f.weight for f in model.features), key=abs, reverse=True
    )  # strongest first


def test_notes_say_what_was_given_and_how_many_leads_contradicted() -> None:
    model = trained(examples(leads(400), contradicting=3), notes=["12 leads not used: still open"])

    assert model.notes[0] == "12 leads not used: still open"
    assert "3 leads had both a won and a lost or disqualified outcome" in model.notes


# --- the metrics ------------------------------------------------------------------------------

CONVERTED = np.array([1] * 10 + [0] * 90)  # a 10% base rate
BEST_FIRST = np.linspace(0.99, 0.01, 100)  # every converted lead ranked above every other


@pytest.mark.parametrize(
    ("p", "auc", "lift"),
    [
        (BEST_FIRST, 1.0, 10.0),  # a perfect ranking: the top decile holds every conversion
        (BEST_FIRST[::-1], 0.0, 0.0),  # reversed
        (np.roll(BEST_FIRST, 5), 0.5, 5.0),  # half the conversions first, half last
    ],
)
def test_auc_and_lift_in_the_top_decile(p: np.ndarray[Any, Any], auc: float, lift: float) -> None:
    found = ranking(CONVERTED, p)

    assert (found.auc, found.lift_top_decile) == (auc, lift)
    assert found.roc[0] == (0.0, 0.0)
    assert found.roc[-1] == (1.0, 1.0)
    assert found.gains[0] == (0.0, 0.0)
    assert found.gains[-1] == (1.0, 1.0)


def test_a_perfect_probability_has_a_brier_score_of_zero() -> None:
    found = ranking(CONVERTED, CONVERTED.astype(np.float64))

    assert found.brier == 0.0
    assert ranking(CONVERTED, np.full(100, 0.1)).brier == pytest.approx(0.09)  # 0.1 x 0.9


def test_the_reliability_table_covers_every_lead_in_tenths() -> None:
    p = np.array([0.0, 0.05, 0.12, 0.18, 0.55, 0.95, 1.0, 1.0])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    table = ranking(y, p).reliability

    assert sum(b.leads for b in table) == len(y)
    assert [(b.low, b.high, b.leads, b.observed) for b in table] == [
        (0.0, 0.1, 2, 0.0),
        (0.1, 0.2, 2, 0.5),
        (0.5, 0.6, 1, 1.0),
        (0.9, 1.0, 3, 0.6667),  # a probability of 1 falls in the last tenth
    ]
    assert table[1].predicted == pytest.approx(0.15)


# --- the world: a hidden truth the default rules get partly wrong ----------------------------

WORLD_LEADS = 4000  # 3,800 labelled, 600 conversions: above the default minimums
FRESH_LEADS = 2000
LIVE = load_rules(DEFAULT_RULES_FILE)
SETTINGS = TrainingSettings()  # what `train` runs with by default


@functools.cache
def world_model() -> LikelihoodModel:
    """The world's model under the default rules and settings, trained once per test session
    (tests/unit/test_learning_proposals.py proposes rules from it)."""
    return world.trained_model(WORLD_LEADS, seed=7)[0]


@pytest.fixture(scope="module")
def model() -> LikelihoodModel:
    return world_model()


def test_on_the_world_the_model_ranks_the_newer_leads_far_better_than_the_rules(
    model: LikelihoodModel,
) -> None:
    e = model.evaluation
    print(
        f"\non {e.test_leads} newer test leads ({e.test_positives} converted), trained on "
        f"{model.training.leads}: AUC model {e.model.auc:.3f} rules {e.rules.auc:.3f}; "
        f"top-decile lift model {e.model.lift_top_decile:.2f} rules {e.rules.lift_top_decile:.2f}"
        f"; Brier model {e.model.brier:.4f} rules {e.rules.brier:.4f}"
    )

    assert e.model.auc >= e.rules.auc + 0.1
    assert e.model.lift_top_decile > e.rules.lift_top_decile + 1


def test_on_the_world_the_models_probabilities_mean_what_they_say(model: LikelihoodModel) -> None:
    """On leads it never saw (another draw of the world), the mean likelihood is the share that
    converted, and so is each tenth of the reliability table with enough leads in it."""
    scorer = Scorer(model)
    fresh = [
        found
        for lead in world.generate(FRESH_LEADS, seed=11)
        if isinstance(found := lead_example(
            items=lead.history(), outcomes=lead.outcomes(), mql_at=None, rules=LIVE,
            policy=SETTINGS.policy, windows_days=SETTINGS.windows_days, now=world.NOW,
        ), Example)
    ]  # fmt: skip
    p = np.array([scorer.predict(found.features).probability for found in fresh])
    y = np.array([int(found.label.positive) for found in fresh])
    table = ranking(y, p).reliability
    print(f"\non {len(y)} fresh leads: mean likelihood {p.mean():.3f}, share converted "
          f"{y.mean():.3f}")  # fmt: skip
    for b in table:
        print(f"  {b.low:.1f}-{b.high:.1f}: {b.leads:4d} leads, predicted {b.predicted:.3f}, "
              f"observed {b.observed:.3f}")  # fmt: skip

    assert abs(p.mean() - y.mean()) < 0.03
    for b in table:
        if b.leads >= 100:  # enough leads for the share to be known within a few points
            assert abs(b.predicted - b.observed) < 0.05, b
    assert model.evaluation.model.brier < model.evaluation.rules.brier


def test_on_the_world_the_mean_likelihood_of_the_test_leads_is_their_share_converted(
    model: LikelihoodModel,
) -> None:
    """The newer test leads are a fair sample: split by cut-off, and each labelled only once
    its horizon is over (had they been the last decided, non-conversions, known only at the
    horizon's end, would crowd them)."""
    e = model.evaluation
    predicted = sum(b.leads * b.predicted for b in e.model.reliability) / e.test_leads
    observed = e.test_positives / e.test_leads
    print(f"\non the test leads: mean likelihood {predicted:.3f}, share converted {observed:.3f}")

    assert sum(b.leads for b in e.model.reliability) == e.test_leads
    assert abs(predicted - observed) < 0.03


def probe(
    *,
    seniority: str = "individual contributor",
    industry: str = "Retail",
    import_list: str | None = None,
    behaviour: str | None = None,
    days_before_cutoff: float = 16,
) -> dict[str, float]:
    """The features at its cut-off of one lead made as the world makes them (an identify with
    its picture and origin, then `behaviour` once), through the real path: enriched events ->
    facts -> history -> `lead_example` (activity, picture, the running rules) -> features."""
    first_seen = world.START
    picture = {
        "profile": {
            "email": "probe@retail1.example",
            "title": world.TITLE_WORDS[seniority].format("Operations"),
            "seniority": seniority,
            "job_function": "operations",
            "country": "US",
        },
        "firmographics": {"domain": "retail1.example", "employee_count": 500, "industry": industry},
    }
    calls: list[tuple[datetime, dict[str, Any]]] = [
        (first_seen, {"type": "identify",
                      "context": {"import": {"list": import_list}} if import_list else {}}),
    ]  # fmt: skip
    if behaviour is not None:
        family, _, name = behaviour.partition(":")
        call = (
            {"type": "page", "name": name, "properties": {"path": name}}
            if family == "page"
            else {"type": "track", "event": name.title()}
        )
        cutoff = first_seen + timedelta(days=SETTINGS.policy.cutoff_days)
        calls.append((cutoff - timedelta(days=days_before_cutoff), call))
    items = []
    for number, (at, call) in enumerate(calls):
        event = enriched_event(
            message_id=f"probe-{number}", lead_id="probe", timestamp=at, received_at=at,
            identified=True, stage="known", source="import" if import_list else "website",
            **picture, **call,
        )  # fmt: skip
        facts = {k: v for k, v in facts_of(event).items() if v is not None}
        items.append(HistoryItem(event.message_id, at, facts, behaviour=True))
    found = lead_example(
        items=items, outcomes=[], mql_at=None, rules=LIVE, policy=SETTINGS.policy,
        windows_days=SETTINGS.windows_days, now=first_seen + timedelta(days=365),
    )  # fmt: skip
    assert isinstance(found, Example), found
    return found.features


def with_fact(fact: str, *, days_before_cutoff: float = 16) -> dict[str, float]:
    """A probe lead with one TRUTH fact (a behaviour `days_before_cutoff`); without any: an
    individual contributor in retail who came from the website and did nothing."""
    name, _, value = fact.partition("=")
    if fact.startswith(("event:", "page:")):
        return probe(behaviour=fact, days_before_cutoff=days_before_cutoff)
    if name == "profile.seniority":
        return probe(seniority=value)
    if name == "firmographics.industry":
        return probe(industry=next(i for i in world.INDUSTRIES if i.casefold() == value))
    if name == "origin.import_list":
        return probe(import_list=value)
    raise AssertionError(f"no probe for {fact}")


def log_odds(scorer: Scorer, features: dict[str, float]) -> float:
    p = scorer.predict(features).probability
    return math.log(p / (1 - p))


def test_on_the_world_the_model_recovers_the_order_and_signs_of_the_strongest_true_effects(
    model: LikelihoodModel,
) -> None:
    """Each truth fact's learned effect: the model's log-odds of a probe lead with the fact
    minus the same lead's without it. A behaviour is done once mid-month, 16 days before the
    cut-off, where the world puts a lead's behaviour (uniformly over its first 28 days); the
    table also shows it done 3 days before (in every window), which only 5 in 28 of the world's
    occurrences are: there the model's 7-day weights, learned mostly from leads that did it
    several times, pull a single occurrence down."""
    scorer = Scorer(model)
    base = log_odds(scorer, probe())
    effects, late = {}, {}
    print(f"\n{'fact':42} {'truth':>6} {'learned':>8} {'3 days before':>14}")
    for fact, truth in world.TRUTH.items():
        effects[fact] = log_odds(scorer, with_fact(fact)) - base
        late[fact] = log_odds(scorer, with_fact(fact, days_before_cutoff=3)) - base
        print(f"{fact:42} {truth:+6.2f} {effects[fact]:+8.2f} {late[fact]:+14.2f}")
    strong = [fact for fact, truth in world.TRUTH.items() if abs(truth) >= 0.7]
    truths = [world.TRUTH[fact] for fact in strong]
    rho = spearmanr(truths, [effects[fact] for fact in strong]).statistic
    rho_late = spearmanr(truths, [late[fact] for fact in strong]).statistic
    print(f"Spearman over the {len(strong)} facts with |truth| >= 0.7: {rho:.3f} "
          f"(3 days before the cut-off: {rho_late:.3f})")  # fmt: skip

    assert rho >= 0.8
    for fact in strong:
        assert effects[fact] * world.TRUTH[fact] > 0, fact  # the same sign
        assert late[fact] * world.TRUTH[fact] > 0, fact


def test_on_the_world_nothing_seen_only_after_the_outcome_is_a_feature(
    model: LikelihoodModel,
) -> None:
    """Converted leads visit /onboarding after they won: a model that knew it saw the future."""
    visits = [
        event
        for lead in world.generate(200)
        for event in lead.events
        if event.type == "page" and event.name == "/onboarding"
    ]
    learned = [f.name for f in [*model.features, *model.proposal]] + model.uninformative

    assert visits  # the world does hold them
    assert not [name for name in learned if name.startswith("page:/onboarding")]
