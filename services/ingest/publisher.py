"""Publishing accepted calls to `events.raw`, and knowing whether the broker is there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.ingest.partitioning import KeyCachingPartitioner
from shared.contracts import RawEvent
from shared.kafka import create_producer
from shared.settings import KafkaSettings
from shared.telemetry import MESSAGES_OUT
from shared.topics import EVENTS_RAW

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time; the client must retry (same messageIds)."""


class EventPublisher:
    """Owns the producer. `publish` returns only when the broker acknowledged every event
    (acks=all) and raises `BrokerUnavailable` otherwise, so the API never says yes too early.

    The producer is started in the background and restarted after a failed start, so ingest
    comes up (and answers 503) while the broker is away, and recovers by itself.
    """

    def __init__(self, settings: KafkaSettings, *, timeout_s: float) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._topic = EVENTS_RAW.full_name(settings.topic_prefix)
        self._producer: AIOKafkaProducer | None = None
        self._starter: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        self._starter = asyncio.create_task(self._start_until_connected(), name="producer-start")

    async def _start_until_connected(self) -> None:
        backoff = 0.2
        while True:
            producer = create_producer(
                self._settings, client_id="leadflow-ingest", partitioner=KeyCachingPartitioner()
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                log.warning("broker unreachable (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = producer
            log.info("connected to the broker at %s", self._settings.bootstrap_servers)
            return

    async def stop(self) -> None:
        if self._starter is not None:
            self._starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._starter
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, events: Sequence[RawEvent]) -> None:
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("not connected to the broker yet")
        try:
            async with asyncio.timeout(self._timeout_s):
                # Sends only queue the records; the acks are awaited together, so one request
                # costs one round trip to the broker, not one per event. pydantic's own JSON
                # serialiser (wire names, as shared.codec.encode) is ~2x its dump + orjson.
                acks = [
                    await producer.send(
                        self._topic,
                        value=event.model_dump_json(by_alias=True).encode(),
                        key=event.partition_key.encode(),
                    )
                    for event in events
                ]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            log.warning("broker did not acknowledge %d events: %r", len(events), exc)
            raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc
        MESSAGES_OUT.labels("ingest", self._topic).inc(len(events))
