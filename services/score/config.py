"""score settings (LEADFLOW_SCORE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.score.engine.ruleset import DEFAULT_RULES_FILE
from services.score.learning.settings import TrainingSettings
from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS
from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings


class ScoreSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SCORE_", **SERVICE_SOURCES)

    health_port: int = 8082
    api_port: int = 8092
    # A source of the scoring rules, adopted at start: published when its content is new
    # (rules_versions.py); the rules' versions live in the database (`/v1/rules`).
    rules_file: Path = DEFAULT_RULES_FILE
    # The decay sweep: every `sweep_interval_s`, MQLs not evaluated for `sweep_stale_after_s`
    # are re-evaluated (at most `sweep_batch` per round) through `score.commands`.
    sweep_interval_s: float = Field(default=300.0, gt=0)
    sweep_stale_after_s: float = Field(default=3600.0, ge=0)
    sweep_batch: int = Field(default=1000, ge=1)
    # After a rules change, leads on another version are rescored `sweep_batch` at a time, the
    # next batch as soon as the last is done; the sweep looks every `rescore_interval_s` and
    # waits that long at most for a batch before leaving it to the next round.
    rescore_interval_s: float = Field(default=10.0, gt=0)
    # A simulation through the API (`POST /v1/rules/simulations`, in the background) ends
    # `failed` after this long: a hostile or huge candidate cannot keep a replica busy, even
    # if nobody cancels it. The CLI has no budget.
    simulate_budget_s: float = Field(default=900.0, gt=0)
    # leadflow learns (docs/learning.md). `learning`: how models are trained, JSON, e.g.
    # LEADFLOW_SCORE_LEARNING='{"min_outcomes": 500, "policy": {"horizon_days": 60}}'.
    learning: TrainingSettings = TrainingSettings()
    # A training every `retrain_interval_h` (Einstein refreshes every 10 days; 0: only on
    # demand), in a process of its own. Its model is stored, and published only with
    # `auto_publish` and when it beats the live model's test AUC.
    retrain_interval_h: float = Field(default=240.0, ge=0)
    auto_publish: bool = False
    # The live model is reported as drifting (log, `leadflow_score_model_auc`) when its AUC on
    # the outcomes decided since its training falls this far below its test AUC.
    drift_margin: float = Field(default=0.05, ge=0, le=1)
    # Housekeeping (`housekeeping.py`): every `housekeeping_interval_s`, one replica at a time.
    # The scored history (`score.history`: each message's stored facts, what rescores,
    # simulations, unmerges and training replay) is kept `history_retention_days` by event
    # time: a B2B sales cycle runs up to a year, and a model learns from a lead's whole way to
    # an outcome, so a year and a margin (400). Keep it longer than the rules look back (decay,
    # `within_days`): a rescore replays only the history that is left. At least 31 days,
    # longer than any topic keeps a message (`shared.privacy.TOPICS_KEEP_AT_MOST_DAYS`), so a
    # message that can still arrive again finds its history row and counts once (an older
    # one, a backfill, by its ledger lines).
    history_retention_days: float = Field(default=400, ge=TOPICS_KEEP_AT_MOST_DAYS)
    # An erased lead is remembered (`score.erased_leads`, hashes of lead ids) this long: longer
    # than the longest topic retention (30 days, 31 with a segment left open) and a margin, so
    # a replay of a topic from its earliest offset still finds the lead erased and drops its
    # messages instead of creating it again.
    erased_leads_retention_days: float = Field(default=45, ge=TOPICS_KEEP_AT_MOST_DAYS)
    housekeeping_interval_s: float = Field(default=3600, gt=0)
