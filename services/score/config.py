"""score settings (LEADFLOW_SCORE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.score.engine.ruleset import DEFAULT_RULES_FILE
from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings


class ScoreSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SCORE_", **SERVICE_SOURCES)

    health_port: int = 8082
    api_port: int = 8092
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
    # A simulation through the API (`POST /v1/rules/simulate`) stops after this long with 503:
    # a hostile or huge candidate cannot keep a replica busy. The CLI has no budget.
    simulate_budget_s: float = Field(default=120.0, gt=0)
