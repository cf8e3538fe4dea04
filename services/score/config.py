"""score settings (LEADFLOW_SCORE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.score.rules import DEFAULT_RULES_FILE
from shared.settings import ConsumingServiceSettings


class ScoreSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_SCORE_", frozen=True, extra="ignore")

    health_port: int = 8082
    rules_file: Path = DEFAULT_RULES_FILE
