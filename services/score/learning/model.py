"""A published model as a document (`LikelihoodModel`), and what it says of a lead
(`Scorer.predict`): the probability to convert within the horizon, with its factors.

The model is a logistic one: probability = 1 / (1 + exp(-(intercept + sum of weight x value)))
over the lead's features (`features.features_of`). Calibration is folded into the weights
(`training`), so a factor's effect is its exact share of the log-odds: the factors of a lead add
up, with the intercept, to its likelihood. Scoring a lead is a sum over its few features (no
library call), cheap enough for every event.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.score.engine.scoring import ScoreCard, ScoreState
from services.score.learning.activity import Activity
from services.score.learning.features import (
    BEHAVIOUR_KINDS,
    SECONDS_PER_DAY,
    factor_of,
    features_of,
)
from services.score.learning.outcomes import OutcomePolicy
from shared.contracts import Factor as ContractFactor
from shared.contracts import Likelihood

TOP_FACTORS = 3


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelFeature(_Frozen):
    """One learned weight: `name` (see `features`), in the users' words, and how many training
    leads had it."""

    name: str
    weight: float
    description: str
    support: int
    stable: bool = Field(
        default=True,
        description="fitted on the older and on the newer half of the training leads alone, "
        "the weight has the same sign both times (proposals rely only on stable weights)",
    )


class ReliabilityBin(_Frozen):
    """Test leads whose predicted likelihood fell in [low, high): how many, the mean
    prediction, and the share that converted."""

    low: float
    high: float
    leads: int
    predicted: float
    observed: float


class Ranking(_Frozen):
    """How well a score ranks and predicts the test leads."""

    auc: float = Field(description="area under the ROC curve: 0.5 is chance, 1 is perfect")
    lift_top_decile: float = Field(
        description="the conversion rate of the top 10% by score over the overall rate"
    )
    brier: float = Field(description="mean squared error of the probability (lower is better)")
    reliability: list[ReliabilityBin]
    roc: list[tuple[float, float]] = Field(description="(false positive rate, true positive rate)")
    gains: list[tuple[float, float]] = Field(
        description="(share of leads taken by score, share of conversions they hold)"
    )


class Evaluation(_Frozen):
    """The learned model and the current rules' total score, on the same newer test leads.
    The rules' total becomes a probability through a logistic fit on the training leads, so
    that its calibration can be compared at all."""

    test_leads: int
    test_positives: int
    first_cutoff: datetime
    last_cutoff: datetime
    model: Ranking
    rules: Ranking


class TrainingWindow(_Frozen):
    """The training leads: how many, how many converted, and the span of their cut-offs."""

    leads: int
    positives: int
    first_cutoff: datetime
    last_cutoff: datetime


class LikelihoodModel(_Frozen):
    """A trained model as stored (`score.config_versions`, kind `model`) and published."""

    kind: str = "logistic"
    trained_at: datetime
    trained_by: str
    rules_version: str = Field(description="the rules whose scores and awards were features")
    policy: OutcomePolicy
    windows_days: tuple[float, ...]
    intercept: float
    features: list[ModelFeature]
    training: TrainingWindow
    evaluation: Evaluation
    notes: list[str] = Field(
        default_factory=list, description="what training left out or noticed, and why"
    )
    uninformative: list[str] = Field(
        default_factory=list,
        description="features left out for having one value in every training lead",
    )
    proposal_intercept: float = 0.0
    proposal: list[ModelFeature] = Field(
        default_factory=list,
        description="weights fitted on the rules' awards and the facts no rule reads, from "
        "which `propose-rules` writes a rules file",
    )


@dataclass(frozen=True)
class Factor:
    description: str  # in the users' words ("asked for a demo")
    effect: float  # its share of the log-odds (the features it sums, see `Scorer`)


@dataclass(frozen=True)
class Prediction:
    probability: float
    up: tuple[Factor, ...]  # the strongest factors raising it, strongest first
    down: tuple[Factor, ...]  # the strongest lowering it


class Scorer:
    """A published model, ready to score leads (built once per version)."""

    def __init__(self, model: LikelihoodModel) -> None:
        self.model = model
        self._terms = {f.name: (f.weight, f.description) for f in model.features}
        # the behaviour kinds it weighs: a lead's other kinds are not turned into features
        self._kinds = frozenset(
            factor_of(f.name) for f in model.features if f.name.startswith(BEHAVIOUR_KINDS)
        )

    @property
    def windows_days(self) -> tuple[float, ...]:
        return self.model.windows_days

    @cached_property
    def keep_s(self) -> float:
        """How long a lead's activity keeps occurrence times for this model's windows."""
        return max(self.model.windows_days, default=0.0) * SECONDS_PER_DAY

    def lead_likelihood(
        self,
        activity: Activity,
        picture: Mapping[str, Any],
        *,
        card: ScoreCard,
        state: ScoreState,
        at: datetime,
        version: str,
    ) -> Likelihood:
        """A lead's likelihood as of `at` (its activity holding its messages up to then), as
        the contracts carry it: what the handler emits and `explain` shows."""
        features = features_of(
            activity,
            picture,
            card=card,
            state=state,
            at=at,
            windows_days=self.windows_days,
            kinds=self._kinds,
        )
        return self.likelihood(self.predict(features), version=version)

    def likelihood(self, prediction: Prediction, *, version: str) -> Likelihood:
        """A prediction as the contracts carry it (`leads.scored`, `leads.lifecycle`)."""
        return _likelihood(
            round(prediction.probability, 4),
            version,
            self.model.policy.horizon_days,
            tuple(_factor(f.description, f.effect) for f in prediction.up),
            tuple(_factor(f.description, f.effect) for f in prediction.down),
        )

    def predict(self, features: Mapping[str, float], *, top: int = TOP_FACTORS) -> Prediction:
        """The lead's likelihood and its `top` factors each way (the features that share a
        description are one factor). A feature the model does not know counts nothing."""
        logit = self.model.intercept
        effects: dict[str, float] = {}
        terms = self._terms
        for name, value in features.items():
            term = terms.get(name)
            if term is None or not value:
                continue
            effect = term[0] * value
            logit += effect
            # a behaviour's windows (@ever, @7d...) are one factor: their effects add up
            effects[term[1]] = effects.get(term[1], 0.0) + effect
        ranked = sorted(effects.items(), key=_by_effect)
        up = [Factor(d, round(e, 4)) for d, e in reversed(ranked[-top:]) if e > 0]
        down = [Factor(d, round(e, 4)) for d, e in ranked[:top] if e < 0]
        return Prediction(_sigmoid(logit), tuple(up), tuple(down))


# A lead's likelihood is built for every event it scores on; its factors are few distinct ones.
@functools.lru_cache(maxsize=4096)
def _factor(description: str, effect: float) -> ContractFactor:
    return ContractFactor(description=description, effect=round(effect, 3))


@functools.lru_cache(maxsize=4096)
def _likelihood(
    probability: float,
    version: str,
    horizon_days: float,
    up: tuple[ContractFactor, ...],
    down: tuple[ContractFactor, ...],
) -> Likelihood:
    return Likelihood(
        probability=probability,
        model_version=version,
        horizon_days=horizon_days,
        up=list(up),
        down=list(down),
    )


def _by_effect(item: tuple[str, float]) -> float:
    return item[1]


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    odds = math.exp(logit)
    return odds / (1.0 + odds)
