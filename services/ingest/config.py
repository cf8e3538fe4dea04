"""ingest settings (LEADFLOW_INGEST_*)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import SERVICE_SOURCES, ServiceSettings

# Also the defaults of the lead import's own classes (used without settings in tests).
MAX_INFLATED_BYTES = 2 << 30
MAX_GZIP_RATIO = 100.0


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
    # Lead-list imports (README, "Import a lead list"). Sized for the largest list we support,
    # 1,048,576 rows (a spreadsheet's row limit): about 400 bytes of spool per lead, ~420 MB.
    # Past a limit the upload is refused with 413 and the reason; nothing of it is published.
    # gzip: inflated bytes per import, and inflated/compressed beyond the first 16 MiB (a CSV
    # compresses 5 to 20 times; a "compression bomb" of one repeated character, 1,000 times).
    import_max_inflated_bytes: int = Field(default=MAX_INFLATED_BYTES, ge=1)
    import_max_gzip_ratio: float = Field(default=MAX_GZIP_RATIO, gt=1)
    # The merge spool (a SQLite file in the temporary directory, deploy/base/ingest.yaml's /tmp
    # emptyDir, whose sizeLimit must hold `import_spool_max_total_bytes` and some slack).
    import_spool_max_bytes: int = Field(default=512 * 1024**2, ge=64 * 1024)
    import_spool_max_total_bytes: int = Field(default=1024**3, ge=64 * 1024)
    # Finished imports' reports, for `GET /v1/leads/import/{id}`: kept this long, and at most
    # this many bytes of them per replica (the oldest go first).
    import_report_ttl_s: float = Field(default=3600, gt=0)
    import_reports_max_bytes: int = Field(default=32 * 1024**2, ge=1024**2)

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
