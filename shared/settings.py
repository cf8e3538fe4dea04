"""Settings shared by every service, read from the environment (pydantic-settings).

Connection settings have one prefix for the whole deployment (`LEADFLOW_KAFKA_*`,
`LEADFLOW_DATABASE_*`); each service adds its own frozen settings class with its own prefix
(`LEADFLOW_ENRICH_*`, ...) that holds these as `kafka` and `database`. Missing secrets fail at
start, before any connection is tried.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """How to reach the broker and how clients behave (LEADFLOW_KAFKA_*)."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
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
    # as soon as one byte is there (fetch.min.bytes=1), so the wait costs nothing but empty
    # fetches. The development broker (Tansu) answers a held fetch late (one hop: p50 ~5 ms at a
    # 20 ms wait, ~120 ms at aiokafka's 500 ms default), and every fetch it answers costs it CPU:
    # at 20 ms the idle stack's fetches alone took ~30 % of a core in the broker and ~5 % in each
    # consumer. The whole stack at 1,000 events/s (2026-11-24, 2 cores, 20 s runs): wait 20 ms ->
    # 185 % CPU, speed-to-lead p99 714 / 804 ms; 50 -> 168-182 %, 200-525 ms; 70 -> 140-163 %,
    # 161 / 236 ms; 100 -> 136-146 %, 253-276 ms; 200 -> 116 %, 373 ms (p50 254). At 100
    # events/s, p99 144 ms at 20, 120 at 70, 266 at 200.
    fetch_max_wait_ms: int = Field(default=70, ge=1, le=500)
    # Bytes per partition batch. aiokafka's 16 KB default holds ~16 raw events; 256 KB doubled
    # produce throughput here (bench/broker.py) at no latency cost (linger still bounds waits).
    max_batch_bytes: int = Field(default=262_144, ge=16_384)
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None


class DatabaseSettings(BaseSettings):
    """How to reach PostgreSQL (LEADFLOW_DATABASE_*). `url` has no default: it is a secret."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_DATABASE_", frozen=True, extra="ignore")

    url: SecretStr = Field(description="postgresql+asyncpg://user:password@host:port/database")
    pool_size: int = Field(default=5, ge=1)
    statement_timeout_ms: int = Field(default=30_000, ge=100)


class ConsumerSettings(BaseSettings):
    """Tuning of the consumer runner (LEADFLOW_CONSUMER_*), the same for every consuming service."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_CONSUMER_", frozen=True, extra="ignore")

    max_batch_records: int = Field(default=500, ge=1)
    poll_timeout_ms: int = Field(default=200, ge=1)
    retry_initial_backoff_s: float = Field(default=0.2, gt=0)
    retry_max_backoff_s: float = Field(default=10.0, gt=0)
    # A transient failure that lasts longer than this stops the process (non-zero exit) so an
    # orchestrator restarts it and an operator is alerted; shorter outages are ridden out.
    retry_give_up_after_s: float = Field(default=600.0, gt=0)
    shutdown_drain_timeout_s: float = Field(default=20.0, gt=0)


class ServiceSettings(BaseSettings):
    """Base of each service's settings class. Subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    log_level: str = "INFO"
    health_host: str = "127.0.0.1"
    health_port: int = Field(default=8080, ge=0, le=65535)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


class ConsumingServiceSettings(ServiceSettings):
    """A service that consumes topics and owns tables."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
