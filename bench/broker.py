"""The raw broker ceiling: aiokafka producing and consuming raw-event-sized messages with
nothing else in the way. Pipeline figures are read against this number (issue 8)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.figures import Figure, median
from bench.infra import BenchInfra
from shared.kafka import aiokafka_connection, create_producer
from shared.settings import KafkaSettings
from shared.topics import EVENTS_RAW

SECTION = "broker"
MESSAGES = 100_000
RUNS = 3
EXAMPLE = Path(__file__).resolve().parents[1] / "shared/contracts/examples/events.raw.json"


async def run(infra: BenchInfra) -> list[Figure]:
    produced: list[float] = []
    consumed: list[float] = []
    for _ in range(RUNS):
        prefix = await infra.fresh_topic_prefix()
        settings = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
        topic = EVENTS_RAW.full_name(prefix)
        produced.append(await _produce(settings, topic))
        consumed.append(await _consume(settings, topic))
    return [
        Figure(SECTION, "aiokafka produce, acks=all (raw event, ~1 KB)", median(produced), "msg/s"),
        Figure(SECTION, "aiokafka consume (same messages)", median(consumed), "msg/s"),
    ]


async def _produce(settings: KafkaSettings, topic: str) -> float:
    payload = EXAMPLE.read_bytes()
    producer = create_producer(settings, client_id="bench-broker")
    await producer.start()
    try:
        started = time.perf_counter()
        # Keep a window of sends in flight, as ingest does with a request's events.
        window = 1_000
        for offset in range(0, MESSAGES, window):
            acks = [
                await producer.send(topic, payload, key=str(index).encode())
                for index in range(offset, offset + window)
            ]
            await asyncio.gather(*acks)
        return MESSAGES / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def _consume(settings: KafkaSettings, topic: str) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_connection(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2_000,
    )
    await consumer.start()
    try:
        started = time.perf_counter()
        seen = 0
        while seen < MESSAGES:
            batches = await consumer.getmany(timeout_ms=1_000)
            seen += sum(len(records) for records in batches.values())
        return MESSAGES / (time.perf_counter() - started)
    finally:
        await consumer.stop()
