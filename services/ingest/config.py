"""ingest settings (LEADFLOW_INGEST_*)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from shared.secret_hashes import SHA256_HEX, secret_hash
from shared.settings import SERVICE_SOURCES, ServiceSettings

# Also the defaults of the lead import's own classes (used without settings in tests).
MAX_INFLATED_BYTES = 2 << 30
MAX_GZIP_RATIO = 100.0


WriteKeyScope = Literal["track", "import", "admin", "feedback"]
WRITE_KEY_SCOPES: dict[str, str] = {
    "track": "send tracking calls (/v1/identify, track, page, screen, group, alias, batch)",
    "import": "upload lead lists (/v1/leads/import) and read the reports of its own imports",
    "admin": "read the import reports of every write key",
    "feedback": "report what sales did with leads (/v1/crm/feedback): a CRM's key",
}

WELL_KNOWN_KEYS = ("local-dev-key", "write-key", "writekey", "changeme", "secret", "test")
"""Keys anyone can guess (the local stack's own among them): refused outside the local stack."""


class WriteKey(BaseModel):
    """A write key, configured by the SHA-256 of the key (`shared.secret_hashes`): the `source`
    every event sent with it carries, what it may do, and whether each client address sending
    with it has a limit of its own (on for a website's key, which every visitor's browser holds;
    off for a key only your servers use, which post from a few addresses)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_sha256: str = Field(pattern=SHA256_HEX)
    source: str = Field(min_length=1, max_length=200, pattern=r"\S")
    scopes: list[WriteKeyScope] = Field(min_length=1)
    limit_per_address: bool = True

    @classmethod
    def of(
        cls,
        key: str,
        *,
        source: str,
        scopes: Sequence[WriteKeyScope],
        limit_per_address: bool = True,
    ) -> WriteKey:
        """The entry that configures the plain `key` (only its hash is kept)."""
        return cls(
            key_sha256=secret_hash(key),
            source=source,
            scopes=list(scopes),
            limit_per_address=limit_per_address,
        )


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_INGEST_", **SERVICE_SOURCES)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # JSON object: the key's name -> `WriteKey`, e.g. {"website": {"key_sha256": "<hex>",
    # "source": "website", "scopes": ["track"]}} (a CRM's: "scopes": ["feedback"], with
    # "limit_per_address": false); `python -m services.ingest.auth new-key` makes a key and
    # prints its entry. No default: a deployment must say which keys it accepts.
    write_keys: dict[str, WriteKey]
    # Only `make run`'s local stack sets it: accepts its well-known key `local-dev-key` and serves
    # the API's documentation (/docs, /openapi.json), which a production tracking API does not.
    local_stack: bool = False
    # The addresses of the proxies in front of ingest (an ingress controller, a load balancer),
    # comma-separated IPs or CIDRs, or "*": their X-Forwarded-For names the client address the
    # per-address limits count. Any other sender's X-Forwarded-For is ignored.
    trusted_proxies: str = "127.0.0.1"
    # How long a request may wait for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1)
    # Rate limits are per replica (docs/architecture.md, "Limits"), in events: a batch of 100
    # costs 100. Each burst must hold the largest batch a client sends at once (500 KB is
    # about 1,500 small events). Per write key, and per client address for the keys that have
    # `limit_per_address` (so one visitor holding a website's key cannot drain its bucket).
    rate_limit_events_per_s: float = Field(default=10_000, gt=0)
    rate_limit_burst: int = Field(default=20_000, ge=1)
    rate_limit_per_address_events_per_s: float = Field(default=200, gt=0)
    rate_limit_per_address_burst: int = Field(default=2_000, ge=1)
    # Failed authentications (a missing or unknown key) per client address: past them the
    # address gets 429 without its key being checked or its body read.
    auth_failures_per_s: float = Field(default=1, gt=0)
    auth_failures_burst: int = Field(default=20, ge=1)
    # Slow clients: the longest wait for the next piece of any body, and for a tracking call's
    # whole body; an import's body must average `import_min_rate_bytes_per_s` once
    # `import_rate_grace_s` has passed. Past any of them: 408, and the connection is closed.
    body_idle_timeout_s: float = Field(default=15, gt=0)
    tracking_body_deadline_s: float = Field(default=10, gt=0)
    import_min_rate_bytes_per_s: int = Field(default=16 * 1024, ge=1)
    import_rate_grace_s: float = Field(default=60, gt=0)
    # Connections served at once by a replica (past it: 503), so that many slow or idle
    # clients cannot take all its memory and file descriptors.
    max_connections: int = Field(default=2_000, ge=16)
    # Lead-list imports (README, "Import a lead list"). Sized for the largest list we support,
    # 1,048,576 rows (a spreadsheet's row limit): about 400 bytes of spool per lead, ~420 MB.
    # Past a limit the upload is refused with 413 and the reason; nothing of it is published.
    # gzip: inflated bytes per import, and inflated/compressed beyond the first 16 MiB (a CSV
    # compresses 5 to 20 times; a "compression bomb" of one repeated character, 1,000 times).
    import_max_inflated_bytes: int = Field(default=MAX_INFLATED_BYTES, ge=1)
    import_max_gzip_ratio: float = Field(default=MAX_GZIP_RATIO, gt=1)
    # Imports running at once per replica, and per write key (so one key's uploads, slow or
    # not, never hold every slot).
    import_slots: int = Field(default=4, ge=1)
    import_slots_per_key: int = Field(default=2, ge=1)
    # The merge spool (a SQLite file in the temporary directory, deploy/base/ingest.yaml's /tmp
    # emptyDir, whose sizeLimit must hold `import_spool_max_total_bytes` and some slack).
    import_spool_max_bytes: int = Field(default=512 * 1024**2, ge=64 * 1024)
    import_spool_max_total_bytes: int = Field(default=1024**3, ge=64 * 1024)
    # Finished imports' reports, for `GET /v1/leads/import/{id}`: kept this long, and at most
    # this many bytes of them per replica (the oldest go first).
    import_report_ttl_s: float = Field(default=3600, gt=0)
    import_reports_max_bytes: int = Field(default=32 * 1024**2, ge=1024**2)

    @field_validator("write_keys", mode="before")
    @classmethod
    def _no_key_in_clear(cls, keys: object) -> object:
        # Before pydantic's own checks, whose errors would name each entry, here the key itself.
        if isinstance(keys, dict) and any(
            not isinstance(entry, dict | WriteKey) for entry in keys.values()
        ):
            raise ValueError(
                "each entry must be an object (key_sha256, source, scopes): an entry "
                "`key -> source` puts the key itself in the configuration; make entries with "
                "`python -m services.ingest.auth new-key`"
            )
        return keys

    @field_validator("write_keys")
    @classmethod
    def _at_least_one_key(cls, keys: dict[str, WriteKey]) -> dict[str, WriteKey]:
        if not keys:
            raise ValueError("at least one write key is needed")
        if any(not name.strip() for name in keys):
            raise ValueError("a write key's name cannot be blank")
        return keys

    @model_validator(mode="after")
    def _no_well_known_key_outside_the_local_stack(self) -> Self:
        if self.local_stack:
            return self
        well_known = {secret_hash(key): key for key in WELL_KNOWN_KEYS}
        for name, key in self.write_keys.items():
            if key.key_sha256 in well_known:
                raise ValueError(
                    f"write key {name!r} is the well-known key {well_known[key.key_sha256]!r}, "
                    "which anyone can guess: make a key with `python -m services.ingest.auth "
                    "new-key` (only the local stack, LEADFLOW_INGEST_LOCAL_STACK, accepts it)"
                )
        return self
