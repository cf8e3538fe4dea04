"""Models as people read them in a terminal (`python -m services.score models ...`)."""

from __future__ import annotations

from collections.abc import Sequence

from services.score.learning.model import LikelihoodModel, Ranking
from shared.config_versions import ConfigVersion
from shared.operator import table
from shared.versions_view import versions_table

SHOWN_FEATURES = 12


def render_versions(versions: Sequence[ConfigVersion], *, live: str | None) -> str:
    if not versions:
        return "no model trained yet: python -m services.score train"
    return versions_table(versions, live=live, saved="trained (UTC)")


def render_model(
    model: LikelihoodModel, *, version: str, live: bool, rules_version: str | None = None
) -> str:
    """One model for people; `rules_version`: the running rules', to warn when the model was
    trained under others (its `rules.*` features then read scores of other rules)."""
    e = model.evaluation
    out = [
        f"model {version}{' (live)' if live else ''}: {model.kind}, trained "
        f"{model.trained_at:%Y-%m-%d %H:%M} UTC by {model.trained_by}, rules {model.rules_version}",
        f"  converted: {', '.join(model.policy.positive)} within {model.policy.horizon_days:g} "
        f"days of the cut-off ({_cutoff(model)})",
        f"  training: {model.training.leads} leads ({model.training.positives} converted), "
        f"cut-offs {model.training.first_cutoff:%Y-%m-%d} to {model.training.last_cutoff:%Y-%m-%d}",
        f"  test:     {e.test_leads} newer leads ({e.test_positives} converted), cut-offs "
        f"{e.first_cutoff:%Y-%m-%d} to {e.last_cutoff:%Y-%m-%d}",
        "",
        table(
            ["on the test leads", "model", "current rules"],
            [
                ("AUC", f"{e.model.auc:.3f}", f"{e.rules.auc:.3f}"),
                (
                    "lift, top 10%",
                    f"{e.model.lift_top_decile:.2f}",
                    f"{e.rules.lift_top_decile:.2f}",
                ),
                ("Brier score", f"{e.model.brier:.4f}", f"{e.rules.brier:.4f}"),
            ],
        ),
        "",
        "calibration of the model (predicted likelihood -> share that converted):",
        _reliability(e.model),
        "",
        f"strongest factors (of {len(model.features)}):",
    ]
    out += [
        f"  {feature.weight:+.2f}  {feature.description}  [{feature.name}, {feature.support} leads]"
        for feature in model.features[:SHOWN_FEATURES]
    ]
    if model.notes:
        out += ["", "notes:"] + [f"  - {note}" for note in model.notes]
    if rules_version is not None and rules_version != model.rules_version:
        out += [
            "",
            f"warning: trained under rules {model.rules_version}, the running rules are "
            f"{rules_version}: its rules-score features read other rules now; train again",
        ]
    return "\n".join(out)


def _cutoff(model: LikelihoodModel) -> str:
    policy = model.policy
    if policy.cutoff == "mql":
        return "cut-off: when the lead became an MQL"
    return (
        f"cut-off: {policy.cutoff_days:g} days after the lead was first seen, or the first "
        "outcome sales reported if earlier"
    )


def _reliability(ranking: Ranking) -> str:
    return table(
        ["predicted", "leads", "mean predicted", "converted"],
        [
            (f"{b.low:.1f}-{b.high:.1f}", b.leads, f"{b.predicted:.3f}", f"{b.observed:.3f}")
            for b in ranking.reliability
        ],
    )
