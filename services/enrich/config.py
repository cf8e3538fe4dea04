"""enrich settings (LEADFLOW_ENRICH_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ConsumingServiceSettings


class EnrichSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ENRICH_", frozen=True, extra="ignore")

    health_port: int = 8081
