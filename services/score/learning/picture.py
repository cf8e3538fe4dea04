"""A model's evaluation as a picture (SVG): ROC, cumulative gains and calibration, the learned
model beside the current rules on the same test leads. For the docs, the CLI
(`models <version> --svg`), the API (`GET /v1/models/{version}/evaluation.svg`) and a console.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # drawn without pyplot: no display, no global state

from services.score.learning.model import LikelihoodModel, Ranking

MODEL_COLOUR = "#2563eb"
RULES_COLOUR = "#ea580c"
CHANCE_COLOUR = "#9ca3af"


def evaluation_svg(model: LikelihoodModel, *, version: str) -> bytes:
    """The three panels as one SVG document (deterministic for a model: no timestamps)."""
    e = model.evaluation
    figure = Figure(figsize=(13.5, 4.4), layout="constrained")
    roc, gains, calibration = figure.subplots(1, 3)
    for ranking, label, colour in (
        (e.model, f"model {version}", MODEL_COLOUR),
        (e.rules, f"rules {model.rules_version}", RULES_COLOUR),
    ):
        roc.plot(
            *zip(*ranking.roc, strict=True), color=colour, label=f"{label} (AUC {ranking.auc:.3f})"
        )
        gains.plot(
            *zip(*ranking.gains, strict=True),
            color=colour,
            marker=".",
            label=f"{label} (top 10%: lift {ranking.lift_top_decile:.2f})",
        )
        _calibration(calibration, ranking, label=label, colour=colour)
    roc.plot([0, 1], [0, 1], color=CHANCE_COLOUR, linestyle="--", label="chance")
    gains.plot([0, 1], [0, 1], color=CHANCE_COLOUR, linestyle="--", label="random order")
    calibration.plot([0, 1], [0, 1], color=CHANCE_COLOUR, linestyle="--", label="perfect")
    _titled(roc, "ROC", "false positive rate", "true positive rate")
    _titled(gains, "Cumulative gains", "share of leads, highest likelihood first",
            "share of conversions")  # fmt: skip
    _titled(calibration, "Calibration", "predicted likelihood", "share that converted")
    figure.suptitle(
        f"Model {version}: {e.test_leads} newer test leads, cut-offs {e.first_cutoff:%Y-%m-%d} "
        f"to {e.last_cutoff:%Y-%m-%d} ({e.test_positives} converted); trained on "
        f"{model.training.leads} older leads"
    )
    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "leadflow"}):  # the same model, the same file
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue().encode()


def _calibration(axes: Axes, ranking: Ranking, *, label: str, colour: str) -> None:
    bins = ranking.reliability
    axes.plot(
        [b.predicted for b in bins],
        [b.observed for b in bins],
        color=colour,
        marker="o",
        label=f"{label} (Brier {ranking.brier:.4f})",
    )


def _titled(axes: Axes, title: str, x: str, y: str) -> None:
    axes.set_title(title)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right" if title != "Calibration" else "upper left", fontsize="small")
