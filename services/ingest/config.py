"""ingest settings (LEADFLOW_INGEST_*)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import SERVICE_SOURCES, ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_INGEST_", **SERVICE_SOURCES)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # JSON object: write key -> source name, e.g. {"k3y": "website"}. No default: a deployment
    # must say which keys it accepts (the local stack passes `local-dev-key`).
    write_keys: dict[str, str]
    # How long a request may wait for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1)
    # Per write key (source), in events: a batch of 100 costs 100. The burst must hold the
    # largest batch a client sends at once (500 KB is about 1,500 small events).
    rate_limit_events_per_s: float = Field(default=10_000, gt=0)
    rate_limit_burst: int = Field(default=20_000, ge=1)

    @field_validator("write_keys")
    @classmethod
    def _at_least_one_key(cls, keys: dict[str, str]) -> dict[str, str]:
        if not keys:
            raise ValueError("at least one write key is needed")
        if any(not key.strip() for key in keys):
            raise ValueError("a write key cannot be blank")
        if any(not source.strip() for source in keys.values()):
            raise ValueError("a source name cannot be blank (it is every event's `source`)")
        return keys
