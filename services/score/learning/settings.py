"""How models are trained (`LEADFLOW_SCORE_LEARNING`, JSON; docs/learning.md). Apart from
`training`, which imports scikit-learn: a score replica reads these settings without loading
it (only a training process does)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.score.learning.outcomes import OutcomePolicy


class TrainingSettings(BaseModel):
    """How a model is trained (`LEADFLOW_SCORE_LEARNING__*`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: OutcomePolicy = OutcomePolicy()
    windows_days: tuple[float, ...] = (7, 30)
    min_outcomes: int = Field(default=1000, ge=2)
    min_positives: int = Field(default=120, ge=1)
    test_share: float = Field(default=0.25, gt=0, lt=1)
    min_support: int = Field(default=10, ge=1)
    regularisation: float = Field(default=1.0, gt=0)
