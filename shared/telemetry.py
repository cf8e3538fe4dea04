"""Logging setup and the Prometheus metrics every service shares.

Metric names are part of what operators depend on (dashboards, alerts); labels carry the service
and topic so one dashboard serves all four services.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("leadflow_messages_in", "Messages consumed and handled", ["service", "topic"])
MESSAGES_OUT = Counter(
    "leadflow_messages_out",
    "Messages produced and acknowledged by the broker",
    ["service", "topic"],
)
DEAD_LETTERS = Counter(
    "leadflow_dead_letters", "Messages sent to a dead-letter topic", ["service", "topic"]
)
RETRIES = Counter(
    "leadflow_transient_retries", "Batches retried after a transient failure", ["service", "cause"]
)
BATCH_SECONDS = Histogram(
    "leadflow_batch_seconds",
    "Time to handle one batch: decode, handle, store, produce, commit",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "leadflow_batch_size",
    "Messages per consumed batch",
    ["service"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "leadflow_consumer_lag",
    "Messages behind the partition's high watermark",
    ["service", "topic", "partition"],
)


def configure_logging(level: str, *, service: str) -> None:
    """One line per record on stderr, with the service name (12-factor: the platform collects)."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
        force=True,
    )
    # aiokafka logs every reconnect attempt at ERROR while a broker is away; our own code
    # reports the outage once, with what it means.
    logging.getLogger("aiokafka").setLevel(
        max(logging.getLevelName(level.upper()), logging.WARNING)
    )
