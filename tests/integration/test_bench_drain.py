"""The benchmark's "drained" on the real broker and PostgreSQL (bench/drain.py): a consumer whose
stored position is one record short of the end is not drained, even where the development
broker's ListOffsets answer says it is; nor is one whose outputs wait in its outbox."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.drain import DrainWatch
from bench.infra import end_offsets
from shared.topics import EVENTS_RAW
from tests.fixtures.infra import Infrastructure


async def produce_in_one_batch(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=200)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"{}", partition=0) for _ in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def store_position(db: asyncpg.Connection, topic: str, next_offset: int) -> None:
    await db.execute(
        """
        INSERT INTO enrich.consumer_offsets (consumer_group, topic, partition, next_offset)
        VALUES ('g', $1, 0, $2)
        ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = $2
        """,
        topic,
        next_offset,
    )


async def test_the_end_of_a_partition_is_its_last_record_not_its_last_batch(
    infrastructure: Infrastructure, topic_prefix: str
) -> None:
    raw = EVENTS_RAW.full_name(topic_prefix)
    await produce_in_one_batch(infrastructure.kafka_bootstrap, raw, 3)
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(raw, p) for p in range(2)]
        listed = await consumer.end_offsets(partitions)
        ends = await end_offsets(consumer, partitions)
    finally:
        await consumer.stop()

    # The development broker's ListOffsets stops at the batch's base offset + 1 (or is right,
    # on a real Kafka); counted from the records, the end is 3 either way; partition 1 is empty.
    assert listed[partitions[0]] in (1, 3)
    assert ends == {partitions[0]: 3, partitions[1]: 0}


async def test_drained_only_at_the_last_record_with_every_output_acknowledged(
    infrastructure: Infrastructure, topic_prefix: str, database_url: str, db: asyncpg.Connection
) -> None:
    raw = EVENTS_RAW.full_name(topic_prefix)
    await produce_in_one_batch(infrastructure.kafka_bootstrap, raw, 3)
    async with DrainWatch(
        database_url=database_url, bootstrap=infrastructure.kafka_bootstrap, prefix=topic_prefix
    ) as watch:
        assert not await watch.drained(), "enrich has applied nothing"

        await store_position(db, raw, 1)
        assert not await watch.drained(), "two records are left"

        await store_position(db, raw, 3)
        await db.execute(
            "INSERT INTO enrich.outbox (batch_id, seq, topic, key, value, header_keys,"
            " header_values, source_topic, source_partition)"
            " VALUES (gen_random_uuid(), 0, $1, NULL, NULL, '{}', '{}', $2, 0)",
            f"{topic_prefix}events.enriched",
            raw,
        )
        assert not await watch.drained(), "an output waits for the broker's acknowledgement"

        await db.execute("DELETE FROM enrich.outbox")
        assert await watch.drained()
