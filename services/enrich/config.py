"""enrich settings (LEADFLOW_ENRICH_*)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings

DATA_DIR = Path(__file__).parent / "data"


class EnrichSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ENRICH_", **SERVICE_SOURCES)

    health_port: int = 8081
    api_port: int = 8091

    # Identity guardrails.
    anonymous_ids_per_week: int = Field(default=20, ge=1)
    max_anonymous_history: int = Field(
        default=500, ge=0, description="anonymous events kept per lead for re-attribution"
    )
    anonymous_history_retention_days: float = Field(default=30, gt=0)
    # Dedupe by messageId: Segment's clients retry for hours; keep ids at least a day.
    seen_messages_retention_hours: float = Field(default=48, ge=24)
    # A merge keeps both leads' pictures (personal data) so that it can be reversed: for this
    # long; afterwards housekeeping forgets it, and it can no longer be unmerged.
    merge_retention_days: float = Field(default=180, gt=0)
    housekeeping_interval_s: float = Field(default=3600, gt=0)

    # Firmographics.
    firmographics_provider: Literal["file", "http", "none"] = "file"
    companies_file: Path = DATA_DIR / "companies.csv"
    vendor_url: str = ""
    vendor_api_key: SecretStr = SecretStr("")
    vendor_timeout_s: float = Field(default=0.5, gt=0)
    vendor_retries: int = Field(default=1, ge=0)
    vendor_cache_ttl_s: float = Field(default=3600, gt=0)
    vendor_breaker_failures: int = Field(default=5, ge=1)
    vendor_breaker_reset_s: float = Field(default=30, gt=0)
    lookup_budget_s: float = Field(
        default=1.0, gt=0, description="the longest a batch waits for the provider"
    )
    reenrich_interval_s: float = Field(default=30, gt=0)
    reenrich_backoff_initial_s: float = Field(default=30, gt=0)
    reenrich_backoff_max_s: float = Field(default=3600, gt=0)
    reenrich_batch: int = Field(default=200, ge=1)

    # Accounts and suppressions (loaded into enrich's tables; also `load-accounts` command).
    accounts_file: Path | None = None
    suppressions_file: Path | None = None
    account_fuzzy_threshold: float = Field(default=90, ge=50, le=100)
    reference_refresh_s: float = Field(default=60, gt=0)

    # Privacy (`services/enrich/erasures.py`). The key of the identifiers' keyed hashes (the
    # do-not-track list, the erasure audit): a secret of the deployment, never changed (a new
    # key would forget every do-not-track entry).
    privacy_key: SecretStr = Field(min_length=32)
    erasure_reporters: list[str] = Field(
        default_factory=lambda: ["score", "router", "console", "sync"],
        description="the services that report their part of an erasure on privacy.reports",
    )
    erasure_resend_after_s: float = Field(
        default=300, gt=0, description="a request not yet resolved is sent again after this"
    )
    erasure_resend_interval_s: float = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _http_needs_url(self) -> EnrichSettings:
        if self.firmographics_provider == "http" and not self.vendor_url:
            raise ValueError("LEADFLOW_ENRICH_VENDOR_URL is required with the http provider")
        return self
