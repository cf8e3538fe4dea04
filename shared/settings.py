"""Settings shared by every service, read from the environment (pydantic-settings).

Connection settings have one prefix for the whole deployment (`LEADFLOW_KAFKA_*`,
`LEADFLOW_DATABASE_*`); each service adds its own frozen settings class with its own prefix
(`LEADFLOW_ENRICH_*`, ...) that holds these as `kafka` and `database`. Missing secrets fail at
start, before any connection is tried: `load_settings` turns the failure into one line per
setting, naming the variable (`SettingsError`), never a traceback.

Where the variables come from: the environment, and then the file `LOCAL_ENV_FILE` in the
working directory when it exists (the local stack, `make run` / `make up`, writes there what it
gives its services, so that operator commands run from the repository find the same database and
broker with no extra setup). A variable set in the environment wins over the file. A deployment
has no such file and sets everything in the environment.
"""

from __future__ import annotations

import os
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOCAL_ENV_FILE = ".devstack/leadflow.env"
"""The local stack's settings (see the module doc); relative to the working directory."""

ENV_FILE = os.environ.get("LEADFLOW_ENV_FILE") or LOCAL_ENV_FILE
"""The file read after the environment: `LOCAL_ENV_FILE` unless `LEADFLOW_ENV_FILE` names
another (the test suite names /dev/null: a local stack running beside it must not lend its
settings to the services and settings the tests build)."""

_SOURCES = SettingsConfigDict(env_file=ENV_FILE, frozen=True, extra="ignore")


class KafkaSettings(BaseSettings):
    """How to reach the broker, as whom, and how clients behave (LEADFLOW_KAFKA_*).

    `security_protocol` is PLAINTEXT for the local stack and the tests (the development broker
    has no TLS and no users); a deployment uses SASL_SSL: TLS to the broker, verified against
    the CA in `ssl_cafile` (the system's CAs when unset), and the service's own user and
    password. `shared.kafka` turns these into each client library's options; the password is
    never logged (`SecretStr`, and errors leave out the input, where it would be plain)."""

    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_KAFKA_", hide_input_in_errors=True, **_SOURCES
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A PEM file of the CA that signed the brokers' certificates (Strimzi's cluster CA, mounted
    # from its Secret); read when a client connects.
    ssl_cafile: str | None = None
    # Real Kafka: on. The development broker (Tansu) does not implement InitProducerId.
    enable_idempotence: bool = False
    request_timeout_ms: int = Field(default=10_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    # The ingest producer's (librdkafka) wait for more records from concurrent requests. The
    # consumers' producers enqueue whole batches and use none (shared.kafka.create_producer).
    linger_ms: int = Field(default=5, ge=0)
    # How long the broker may hold a consumer's fetch when no data is waiting. Real Kafka answers
    # as soon as data is there; the development broker answers held fetches late and pays CPU for
    # each, and 70 ms measured best (bench/RESULTS.md, "The consumers' fetch wait").
    fetch_max_wait_ms: int = Field(default=70, ge=1, le=500)
    # Bytes per partition batch. aiokafka's 16 KB default holds ~16 raw events; 256 KB doubled
    # produce throughput at no latency cost (bench/RESULTS.md, "Producer batch size").
    max_batch_bytes: int = Field(default=262_144, ge=16_384)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _credentials_fit_the_protocol(self) -> Self:
        """A user without a password, or credentials or a CA file that the protocol would
        ignore, is a mistake that would otherwise show only later, as a refused connection or
        as a connection without authentication."""
        protocol = f"LEADFLOW_KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
        credentials = []
        if self.sasl_username:
            credentials.append("LEADFLOW_KAFKA_SASL_USERNAME")
        if self.sasl_password is not None and self.sasl_password.get_secret_value():
            credentials.append("LEADFLOW_KAFKA_SASL_PASSWORD")
        if self.uses_sasl and len(credentials) < 2:
            raise ValueError(
                f"{protocol} authenticates with a user and its password: set both"
                " LEADFLOW_KAFKA_SASL_USERNAME and LEADFLOW_KAFKA_SASL_PASSWORD"
            )
        if credentials and not self.uses_sasl:
            raise ValueError(
                f"{' and '.join(credentials)} set, but {protocol} does not authenticate:"
                " set LEADFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use them"
            )
        if self.ssl_cafile and not self.uses_tls:
            raise ValueError(
                f"LEADFLOW_KAFKA_SSL_CAFILE set, but {protocol} does not use TLS:"
                " set LEADFLOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL) to use it"
            )
        return self


class DatabaseSettings(BaseSettings):
    """How to reach PostgreSQL (LEADFLOW_DATABASE_*). `url` has no default: it is a secret."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_DATABASE_", **_SOURCES)

    url: SecretStr = Field(description="postgresql+asyncpg://user:password@host:port/database")
    pool_size: int = Field(default=5, ge=1, description="connections each process keeps open")
    max_overflow: int = Field(
        default=2,
        ge=0,
        description="connections a process may open beyond pool_size under a burst, closed after"
        " use; a process holds at most pool_size + max_overflow (deploy/README.md, 'Scale':"
        " times the replicas, within PostgreSQL's max_connections)",
    )
    statement_timeout_ms: int = Field(default=30_000, ge=100)


class ConsumerSettings(BaseSettings):
    """Tuning of the consumer runner (LEADFLOW_CONSUMER_*), the same for every consuming service."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_CONSUMER_", **_SOURCES)

    max_batch_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=10.0, gt=0)
    # A transient failure that lasts longer than this stops the process (non-zero exit) so an
    # orchestrator restarts it and an operator is alerted; shorter outages are ridden out.
    retry_give_up_after_s: float = Field(default=600.0, gt=0)
    shutdown_drain_timeout_s: float = Field(default=20.0, gt=0)


Scope = Literal[
    "leads:read",
    "rules:read",
    "rules:simulate",
    "rules:publish",
    "routing:read",
    "routing:simulate",
    "routing:publish",
    "models:read",
    "models:train",
    "models:publish",
    "privacy:erase",
    "privacy:read",
]
SCOPES: dict[str, str] = {
    "leads:read": "read a lead's data: its score explained, its routing history (personal data)",
    "rules:read": "read the scoring rules' versions and the facts rules can read",
    "rules:simulate": "simulate a candidate rules file on the stored history",
    "rules:publish": "save scoring rules as a version and publish one (an earlier one: a rollback)",
    "routing:read": "read the routing configuration's versions (reps' names and emails)",
    "routing:simulate": "simulate a draft routing configuration on recent MQLs",
    "routing:publish": "save a routing configuration as a version and publish one",
    "models:read": "read trained models: metrics, factors, evaluation pictures, proposed rules",
    "models:train": "start a training of a model on the stored history and outcomes",
    "models:publish": "publish a trained model (or an earlier one: a rollback) to every replica",
    "privacy:erase": "erase a person (by email, userId or anonymousId) and lift a do-not-track entry",
    "privacy:read": "read erasure requests and their status per service (no personal data)",
}


class ApiClient(BaseModel):
    """A client of the services' APIs: the SHA-256 of its token (hex) and its scopes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)


class ApiSettings(BaseSettings):
    """Who may call the services' APIs (LEADFLOW_API_CLIENTS, JSON: see `shared.service_api`).
    Empty by default: then nobody may."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_API_", **_SOURCES)

    clients: dict[str, ApiClient] = Field(default_factory=dict)


class ServiceSettings(BaseSettings):
    """Base of each service's settings class. Subclasses set `env_prefix` (with `SERVICE_SOURCES`).
    Every service serves its health, readiness and metrics on `health_host:health_port` (open:
    probes and Prometheus), and nothing else there."""

    model_config = SettingsConfigDict(**_SOURCES)

    log_level: str = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8080, ge=0, le=65535)


class ConsumingServiceSettings(ServiceSettings):
    """A service that consumes topics and owns tables. Its own endpoints, if it has any, are
    served on `api_host:api_port`, to the clients of `api` (`shared.service_api`)."""

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8090, ge=0, le=65535)
    api: ApiSettings = Field(default_factory=ApiSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)


SERVICE_SOURCES: SettingsConfigDict = _SOURCES
"""What a service's settings class passes to its `SettingsConfigDict` beside its `env_prefix`."""

S = TypeVar("S", bound=ServiceSettings)


class SettingsError(Exception):
    """Settings that cannot be used; `str()` is one line per setting at fault, naming its
    environment variable and how to set it."""


def load_settings(settings_class: type[S]) -> S:
    """`settings_class()` from the environment (and `LOCAL_ENV_FILE`); a missing or invalid
    value raises `SettingsError` naming the variable instead of pydantic's traceback."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, settings_class)) from None


def _describe(error: ValidationError, settings_class: type[BaseSettings]) -> str:
    """One line per error: the variable of the field at fault (the nested settings classes
    `kafka`, `database`, `consumer` and `api` have prefixes of their own)."""
    nested = (KafkaSettings, DatabaseSettings, ConsumerSettings, ApiSettings)
    by_title = {cls.__name__: cls for cls in (settings_class, *nested)}
    owner = by_title.get(error.title, settings_class)
    prefix = str(owner.model_config.get("env_prefix", ""))
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a check of several settings together names them itself
            lines.append(f"settings are invalid: {item['msg']}")
            continue
        field = ".".join(str(part) for part in item["loc"])
        variable = f"{prefix}{item['loc'][0]}".upper()
        problem = "is not set" if item["type"] == "missing" else f"is invalid: {item['msg']}"
        lines.append(
            f"setting {field!r} {problem}: set the environment variable {variable}"
            f" (or start the local stack, `make up`, which writes {LOCAL_ENV_FILE})"
        )
    return "\n".join(lines)
