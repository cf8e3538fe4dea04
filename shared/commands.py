"""Sending commands to a service's own command topic: the one way, for companions and
operator commands alike.

A command (`EnrichCommand`, `ScoreCommand`, `RouterCommand`) asks the service's consumer to do
something with exactly-once effects (the consumer applies it in a batch, with its offsets). The
sender produces each command keyed by its `partition_key` (so commands about one lead or one
merge stay in order with each other) and returns only once the broker acknowledged them all
(acks=all): a command acknowledged is a command that will be applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaProducer

from shared.codec import encode
from shared.contracts import EnrichCommand, RouterCommand, ScoreCommand
from shared.kafka import create_producer
from shared.settings import KafkaSettings
from shared.topics import Topic

Command: TypeAlias = EnrichCommand | ScoreCommand | RouterCommand
"""A command contract: its `command_id` is its idempotency key, `partition_key` its key."""


class CommandSender:
    """Produces commands on a command topic. The producer starts at the first send (a service
    whose companions never send opens no connection for them) and stops with `close`."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str) -> None:
        self._kafka = kafka
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def send(self, topic: Topic, commands: Sequence[Command]) -> None:
        """Produce `commands` on `topic` (prefixed as configured) and return once the broker
        acknowledged every one of them. Raises the producer's error otherwise: nothing is
        known to be sent then, and sending again is harmless (commands are idempotent)."""
        if not commands:
            return
        producer = await self._started()
        name = topic.full_name(self._kafka.topic_prefix)
        acks = [
            await producer.send(name, encode(command), key=command.partition_key.encode())
            for command in commands
        ]
        await asyncio.gather(*acks)

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = create_producer(self._kafka, client_id=self._client_id)
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer
