"""router settings (LEADFLOW_ROUTER_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.router.routing_config import DEFAULT_ROUTING_FILE
from shared.settings import ConsumingServiceSettings


class RouterSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ROUTER_", frozen=True, extra="ignore")

    health_port: int = 8083
    routing_file: Path = DEFAULT_ROUTING_FILE
