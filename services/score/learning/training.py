"""Training: from labelled examples to a calibrated, evaluated model (`train`).

1. **Enough outcomes or nothing.** Below `min_outcomes` labelled leads or `min_positives`
   conversions (defaults in the spirit of Salesforce Einstein's 1,000 leads and 120
   conversions), or with one class only, training refuses (`TrainingRefused`) and says how many
   more are needed. Nothing is stored or published by a refused run.
2. **Time-ordered split.** Leads are ordered by their cut-off, the time their likelihood is
   about; the newest `test_share` are the test leads, never seen in training: the model is
   judged on leads that came after every lead it learned from. Each side needs both classes.
3. **Features worth a weight.** A feature seen in fewer than `min_support` training leads is
   left out (it would be noise, and a rare value may identify someone); one with a single value
   in every training lead says nothing and is left out with a note.
4. **The model:** a logistic regression with an L2 penalty (`regularisation` is scikit-learn's
   C: smaller is stronger). Chosen over naive Bayes because behaviours are correlated (a demo
   request comes with pricing views): logistic weights share the credit where naive Bayes
   counts it twice, and a weight reads directly as a rule's points. Calibrated by Platt's
   method on out-of-fold predictions of the training leads (5 folds), folded into the weights,
   so the probabilities mean what they say and every factor stays a plain weight.
5. **Evaluation, side by side:** on the test leads, the model's probability and the current
   rules' total score (made a probability by the same one-feature logistic fit on the training
   leads): AUC, lift in the top decile, Brier score, a reliability table, ROC and gains curves.
6. **A second fit for proposals:** the same leads on the rules' own awards (`rule:*`) and the
   facts no rule reads yet, from which `proposals` writes a candidate rules file. Each of its
   weights is also fitted on the older and the newer half of the training leads alone: a
   weight whose sign the halves disagree on is marked unstable, and proposes nothing.

Pure apart from scikit-learn's arithmetic; memory is the examples' sparse matrix (about 12
bytes per non-zero feature, a few dozen per lead) plus scikit-learn's working copy of it.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from services.score.learning.features import fact_of, factor_of
from services.score.learning.model import (
    Evaluation,
    LikelihoodModel,
    ModelFeature,
    Ranking,
    ReliabilityBin,
    TrainingWindow,
)
from services.score.learning.outcomes import Labelled
from services.score.learning.settings import TrainingSettings

FloatArray = NDArray[np.float64]


class TrainingRefused(Exception):
    """Training cannot give a model worth publishing; the message says why and what is needed."""


class Examples:
    """Labelled leads as a sparse matrix built row by row (`add`), with the rules' total of
    each: bounded by the non-zero features, not by the number of feature names."""

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}
        self._indices = array("i")
        self._values = array("f")
        self._indptr = array("q", [0])
        self._positive = array("b")
        self._cutoff = array("d")
        self._rules_total = array("d")
        self.contradicting = 0

    def __len__(self) -> int:
        return len(self._positive)

    def add(self, features: Mapping[str, float], *, label: Labelled, rules_total: float) -> None:
        for name, value in features.items():
            if value:
                self._indices.append(self.columns.setdefault(name, len(self.columns)))
                self._values.append(value)
        self._indptr.append(len(self._indices))
        self._positive.append(1 if label.positive else 0)
        self._cutoff.append(label.cutoff.timestamp())
        self._rules_total.append(rules_total)
        self.contradicting += label.contradicting

    def matrix(self) -> sparse.csr_matrix:
        return sparse.csr_matrix(
            (
                np.frombuffer(self._values, dtype=np.float32),
                np.frombuffer(self._indices, dtype=np.int32),
                np.frombuffer(self._indptr, dtype=np.int64),
            ),
            shape=(len(self), len(self.columns)),
        )

    @property
    def positive(self) -> NDArray[np.int8]:
        return np.frombuffer(self._positive, dtype=np.int8)

    @property
    def cutoff(self) -> FloatArray:
        """Each example's cut-off, epoch seconds."""
        return np.frombuffer(self._cutoff, dtype=np.float64)

    @property
    def rules_total(self) -> FloatArray:
        return np.frombuffer(self._rules_total, dtype=np.float64)


@dataclass(frozen=True)
class _Fit:
    intercept: float
    weights: FloatArray  # per kept column, calibrated


def train(
    examples: Examples,
    *,
    settings: TrainingSettings,
    describe: Callable[[str], str],
    proposable: Callable[[str], bool],
    rules_version: str,
    trained_by: str,
    now: datetime,
    notes: Collection[str] = (),
) -> LikelihoodModel:
    """A calibrated, evaluated model of `examples` (see the module doc), or TrainingRefused.
    `describe`: a feature in the users' words. `proposable`: whether a fact feature may enter
    the proposal fit (no rule reads it yet)."""
    y = examples.positive.astype(np.int64)
    _check_counts(y, settings)
    order = np.argsort(examples.cutoff, kind="stable")
    test_size = max(1, round(len(y) * settings.test_share))
    train_rows, test_rows = order[:-test_size], order[-test_size:]
    for side, rows in (("training", train_rows), ("test", test_rows)):
        if len(set(y[rows].tolist())) < 2:
            raise TrainingRefused(
                f"the {side} leads (split by their cut-off) hold only one class: "
                "more outcomes of the other kind are needed"
            )
    converted = int(y[train_rows].sum())
    if min(converted, len(train_rows) - converted) < 2:  # calibration's folds need 2 of each
        raise TrainingRefused(
            f"the training leads (split by their cut-off) hold {converted} "
            f"conversions and {len(train_rows) - converted} leads that did not: calibration "
            "needs at least 2 of each, more outcomes of the other kind are needed"
        )
    x = examples.matrix()
    names = sorted(examples.columns, key=examples.columns.__getitem__)
    kept, single, left_out = _worth_a_weight(x[train_rows], names, settings.min_support)
    model_columns = [c for c in kept if not names[c].startswith("rule:")]
    fit = _calibrated_fit(x[train_rows][:, model_columns], y[train_rows], settings)
    support = np.asarray((x[train_rows] != 0).sum(axis=0)).ravel()
    model_p = _probabilities(x[test_rows][:, model_columns], fit)
    rules_p = _rules_probabilities(examples.rules_total, y, train_rows, test_rows)
    proposal_columns = [
        c
        for c in kept
        if names[c].startswith("rule:")
        or (not names[c].startswith("rules.") and proposable(names[c]))
    ]
    proposal = _plain_fit(x[train_rows][:, proposal_columns], y[train_rows], settings)
    stable = _stable(proposal, [names[c] for c in proposal_columns], [
        _plain_fit(x[rows][:, proposal_columns], y[rows], settings)
        for rows in np.array_split(train_rows, 2)  # train_rows are in time order
        if len(set(y[rows].tolist())) == 2
    ])  # fmt: skip
    cutoff = examples.cutoff
    return LikelihoodModel(
        trained_at=now,
        trained_by=trained_by,
        rules_version=rules_version,
        policy=settings.policy,
        windows_days=settings.windows_days,
        intercept=fit.intercept,
        features=_features(model_columns, fit.weights, names, support, describe),
        training=TrainingWindow(
            leads=len(train_rows),
            positives=int(y[train_rows].sum()),
            first_cutoff=_time(cutoff[train_rows[0]]),
            last_cutoff=_time(cutoff[train_rows[-1]]),
        ),
        evaluation=Evaluation(
            test_leads=len(test_rows),
            test_positives=int(y[test_rows].sum()),
            first_cutoff=_time(cutoff[test_rows[0]]),
            last_cutoff=_time(cutoff[test_rows[-1]]),
            model=ranking(y[test_rows], model_p),
            rules=ranking(y[test_rows], rules_p),
        ),
        notes=[*notes, *left_out]
        + (
            [f"{examples.contradicting} leads had both a won and a lost or disqualified outcome"]
            if examples.contradicting
            else []
        ),
        uninformative=single,
        proposal_intercept=proposal.intercept,
        proposal=_features(
            proposal_columns, proposal.weights, names, support, describe, stable=stable
        ),
    )


def _check_counts(y: NDArray[np.int64], settings: TrainingSettings) -> None:
    leads, positives = len(y), int(y.sum())
    missing = []
    if leads < settings.min_outcomes:
        missing.append(
            f"{settings.min_outcomes - leads} more leads with an outcome "
            f"(have {leads}, need {settings.min_outcomes})"
        )
    if positives < settings.min_positives:
        missing.append(
            f"{settings.min_positives - positives} more conversions "
            f"(have {positives}, need {settings.min_positives})"
        )
    if missing:
        raise TrainingRefused("not enough outcomes to learn from: " + "; ".join(missing))
    if positives == leads:
        raise TrainingRefused(
            f"all {leads} leads with an outcome converted: leads that did not are needed too"
        )


def _worth_a_weight(
    x: sparse.csr_matrix, names: list[str], min_support: int
) -> tuple[list[int], list[str], list[str]]:
    """The columns with enough support and more than one value, the names of those left out
    for a single value, and notes on what was left out."""
    present = np.asarray((x != 0).sum(axis=0)).ravel()
    rows = x.shape[0]
    kept, single, alike = [], set(), []
    for column, name in enumerate(names):
        if present[column] < min_support:
            continue
        if present[column] == rows:
            values = x[:, column].data
            if values.size and np.all(values == values[0]):
                single.add((fact_of(name), name.partition("=")[2] or name.partition("~")[2]))
                alike.append(name)
                continue
        kept.append(column)
    notes = [
        f"{fact}: every training lead has the same value ({value}), so it says nothing: left out"
        if value
        else f"{fact}: every training lead has it alike, so it says nothing: left out"
        for fact, value in sorted(single)
    ]
    rare = sum(1 for c in range(len(names)) if present[c] < min_support)
    if rare:
        notes.append(f"{rare} features seen in fewer than {min_support} training leads: left out")
    return kept, alike, notes


def _estimator(settings: TrainingSettings) -> LogisticRegression:
    return LogisticRegression(C=settings.regularisation, max_iter=2000)


def _plain_fit(x: sparse.csr_matrix, y: NDArray[np.int64], settings: TrainingSettings) -> _Fit:
    estimator = _estimator(settings).fit(x, y)
    return _Fit(float(estimator.intercept_[0]), estimator.coef_[0].astype(np.float64))


def _stable(full: _Fit, names: list[str], halves: list[_Fit]) -> list[bool]:
    """Per column of `full`: whether the older and newer halves' fits give its fact (a
    behaviour's windows together, `factor_of`) the same sign as the full fit."""

    def by_fact(fit: _Fit) -> dict[str, float]:
        sums: dict[str, float] = {}
        for name, weight in zip(names, fit.weights.tolist(), strict=True):
            sums[factor_of(name)] = sums.get(factor_of(name), 0.0) + weight
        return sums

    if len(halves) < 2:
        return [False] * len(names)
    whole, parts = by_fact(full), [by_fact(half) for half in halves]
    return [
        all(np.sign(part[factor_of(name)]) == np.sign(whole[factor_of(name)]) for part in parts)
        for name in names
    ]


def _calibrated_fit(x: sparse.csr_matrix, y: NDArray[np.int64], settings: TrainingSettings) -> _Fit:
    """The L2 logistic fit, with Platt's calibration (a, b fitted on out-of-fold scores)
    folded in: p = sigmoid(a * (w.x + w0) + b)."""
    folds = StratifiedKFold(n_splits=min(5, int(min(y.sum(), len(y) - y.sum()))), shuffle=True,
                            random_state=0)  # fmt: skip
    scores = cross_val_predict(_estimator(settings), x, y, cv=folds, method="decision_function")
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(scores).reshape(-1, 1), y)
    slope, shift = float(platt.coef_[0][0]), float(platt.intercept_[0])
    plain = _plain_fit(x, y, settings)
    return _Fit(slope * plain.intercept + shift, slope * plain.weights)


def _probabilities(x: sparse.csr_matrix, fit: _Fit) -> FloatArray:
    logits = np.asarray(x @ fit.weights).ravel() + fit.intercept
    return np.asarray(1.0 / (1.0 + np.exp(-logits)), dtype=np.float64)


def _rules_probabilities(
    totals: FloatArray,
    y: NDArray[np.int64],
    train_rows: NDArray[np.intp],
    test_rows: NDArray[np.intp],
) -> FloatArray:
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(
        totals[train_rows].reshape(-1, 1) / 100, y[train_rows]
    )
    return np.asarray(platt.predict_proba(totals[test_rows].reshape(-1, 1) / 100)[:, 1])


def ranking(y: NDArray[np.int64], p: FloatArray) -> Ranking:
    """How `p` ranks and predicts the outcomes `y` (both classes present)."""
    order = np.argsort(-p, kind="stable")
    top = max(1, math.ceil(len(y) * 0.1))
    rate = float(y.mean())
    false_positive, true_positive, _ = roc_curve(y, p)
    step = max(1, len(false_positive) // 100)
    roc = list(zip(false_positive[::step].tolist(), true_positive[::step].tolist(), strict=True))
    if roc[-1] != (1.0, 1.0):
        roc.append((1.0, 1.0))
    cumulative = np.cumsum(y[order])
    gains = [(0.0, 0.0)] + [
        (share, float(cumulative[max(0, math.ceil(len(y) * share) - 1)] / y.sum()))
        for share in np.linspace(0.05, 1.0, 20).tolist()
    ]
    return Ranking(
        auc=round(float(roc_auc_score(y, p)), 4),
        lift_top_decile=round(float(y[order[:top]].mean()) / rate, 3) if rate else 0.0,
        brier=round(float(brier_score_loss(y, p)), 5),
        reliability=_reliability(y, p),
        roc=[(round(a, 4), round(b, 4)) for a, b in roc],
        gains=[(round(a, 3), round(b, 4)) for a, b in gains],
    )


def _reliability(y: NDArray[np.int64], p: FloatArray, bins: int = 10) -> list[ReliabilityBin]:
    table = []
    which = np.minimum((p * bins).astype(int), bins - 1)
    for index in range(bins):
        inside = which == index
        if inside.any():
            table.append(
                ReliabilityBin(
                    low=index / bins,
                    high=(index + 1) / bins,
                    leads=int(inside.sum()),
                    predicted=round(float(p[inside].mean()), 4),
                    observed=round(float(y[inside].mean()), 4),
                )
            )
    return table


def _features(
    columns: list[int],
    weights: FloatArray,
    names: list[str],
    support: NDArray[np.int64],
    describe: Callable[[str], str],
    *,
    stable: list[bool] | None = None,
) -> list[ModelFeature]:
    features = [
        ModelFeature(
            name=names[column],
            weight=round(float(weight), 5),
            description=describe(names[column]),
            support=int(support[column]),
            stable=True if stable is None else stable[index],
        )
        for index, (column, weight) in enumerate(zip(columns, weights.tolist(), strict=True))
    ]
    return sorted(features, key=lambda f: -abs(f.weight))


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(float(epoch), UTC)


def recent_auc(
    examples: Examples, model: LikelihoodModel, *, since: datetime
) -> tuple[float, int] | None:
    """`model`'s AUC on the examples whose cut-off is after `since` (leads newer than it has
    seen), and how many there were; None without both classes among them."""
    recent = np.flatnonzero(examples.cutoff > since.timestamp())
    y = examples.positive.astype(np.int64)[recent]
    if len(set(y.tolist())) < 2:
        return None
    weights = np.zeros(len(examples.columns))
    for feature in model.features:
        column = examples.columns.get(feature.name)
        if column is not None:
            weights[column] = feature.weight
    logits = np.asarray(examples.matrix()[recent] @ weights).ravel()
    return round(float(roc_auc_score(y, logits)), 4), len(recent)
