"""Where speed-to-lead accumulates: the delay from ingest receipt to each stage's output topic.

Every record on `events.enriched` and `leads.lifecycle` carries the triggering event's
`received_at` (ingest's clock); the record's Kafka timestamp is when the producing service
handed it to its producer, after its transaction committed (the same machine, so one clock).
Their difference is the cumulative delay up to and including that stage; consecutive stages'
figures show what each hop adds. Read after the load has drained, from the topic's start.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer

from shared.kafka import aiokafka_connection
from shared.settings import KafkaSettings
from shared.topics import EVENTS_ENRICHED, LEADS_LIFECYCLE, Topic

STAGES: tuple[tuple[str, Topic], ...] = (("enrich", EVENTS_ENRICHED), ("score", LEADS_LIFECYCLE))
IDLE_MS = 1500  # the topic is read to its end once a fetch brings nothing for this long


async def delays_ms(
    *, bootstrap: str, prefix: str, topic: Topic, received_since: float
) -> list[float]:
    """Sorted delays (ms) of the topic's records whose event ingest received at or after
    `received_since` (epoch seconds)."""
    consumer = AIOKafkaConsumer(
        topic.full_name(prefix),
        **aiokafka_connection(KafkaSettings(bootstrap_servers=bootstrap)),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    delays: list[float] = []
    try:
        while batches := await consumer.getmany(timeout_ms=IDLE_MS, max_records=10_000):
            for records in batches.values():
                for record in records:
                    received = datetime.fromisoformat(orjson.loads(record.value)["received_at"])
                    if (at := received.timestamp()) >= received_since:
                        delays.append(record.timestamp - 1000 * at)
    finally:
        await consumer.stop()
    return sorted(delays)
