"""ingest's producer against the real broker: `publish` returns only once every event is on
`events.raw` (on the partition a Java client or aiokafka would choose for its key), and raises
`BrokerUnavailable` (the API's 503), never returns, when the broker cannot take the events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiokafka.partitioner import DefaultPartitioner

from devstack.broker import LocalBroker, free_port
from services.ingest.publisher import BrokerUnavailable, DeliveryFailed, EventPublisher
from services.ingest.wire import EncodedEvent
from shared.settings import KafkaSettings
from shared.topics import EVENTS_RAW
from tests.fixtures.infra import PARTITIONS, Infrastructure
from tests.fixtures.pipeline import Pipeline


async def started(settings: KafkaSettings, *, timeout_s: float = 5.0) -> EventPublisher:
    """A publisher that has reached the broker (its probe succeeded)."""
    publisher = EventPublisher(settings, timeout_s=timeout_s)
    await publisher.start()
    deadline = time.monotonic() + 20
    while not publisher.ready:
        assert time.monotonic() < deadline, "the publisher never reached the broker"
        await asyncio.sleep(0.05)
    return publisher


def event(key: str, n: int) -> EncodedEvent:
    return EncodedEvent(key.encode(), b'{"n": %d}' % n)


@pytest.fixture
async def publisher(
    infrastructure: Infrastructure, topic_prefix: str
) -> AsyncIterator[EventPublisher]:
    settings = KafkaSettings(
        bootstrap_servers=infrastructure.kafka_bootstrap, topic_prefix=topic_prefix
    )
    publisher = await started(settings)
    yield publisher
    await publisher.stop()


async def test_published_events_are_all_on_the_topic_on_the_java_clients_partitions(
    publisher: EventPublisher, pipeline: Pipeline
) -> None:
    keys = [f"anon-{n}" for n in range(300)] + ["usr-ü", "6f1c2d9e-3b7a-4c55-9e0d-000000000007"]
    events = [event(key, n) for n, key in enumerate(keys)]

    await publisher.publish(events[:150])
    await publisher.publish(events[150:])

    # publish returned: every event is acknowledged, so all are there to read at once.
    records = await pipeline.read(
        EVENTS_RAW.full_name(pipeline.prefix), until=lambda seen: len(seen) >= len(events)
    )
    assert sorted((r.key, r.value) for r in records) == sorted(events)
    partitions = list(range(PARTITIONS))
    for record in records:
        assert record.key is not None
        assert record.partition == DefaultPartitioner()(record.key, partitions, partitions)
    # A key's events keep their order (one partition, in the order they were published).
    for key in (b"anon-7", b"usr-\xc3\xbc"):
        mine = [r.value for r in records if r.key == key]
        assert mine == [e.value for e in events if e.key == key]


async def test_a_record_the_broker_cannot_take_fails_the_whole_publish(
    publisher: EventPublisher,
) -> None:
    too_large = EncodedEvent(b"anon-1", b"x" * 2_000_000)  # over librdkafka's message.max.bytes

    with pytest.raises(BrokerUnavailable) as raised:
        await publisher.publish([event("anon-1", 1), too_large, event("anon-1", 2)])

    assert isinstance(raised.value.__cause__, DeliveryFailed)
    await publisher.publish([event("anon-1", 3)])  # the publisher goes on working


async def test_with_the_broker_gone_a_publish_fails_within_its_timeout() -> None:
    broker = LocalBroker(port=free_port())
    broker.start()
    publisher = None
    try:
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix="gone.")
        publisher = await started(settings, timeout_s=2.0)
        await publisher.publish([event("anon-1", 1)])

        broker.stop()
        began = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await publisher.publish([event("anon-1", n) for n in range(50)])

        assert time.monotonic() - began < 2.0 + 1.0
    finally:
        broker.stop()
        if publisher is not None:
            await publisher.stop()


async def test_before_the_broker_was_ever_reached_a_publish_fails_at_once() -> None:
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", topic_prefix="x.")
    publisher = EventPublisher(nowhere, timeout_s=5.0)
    await publisher.start()
    try:
        began = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await publisher.publish([event("anon-1", 1)])

        assert time.monotonic() - began < 0.5
        assert not publisher.ready
    finally:
        await publisher.stop()
