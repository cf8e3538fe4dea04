"""When the pipeline has drained: every consumer has applied every record of every topic it
reads, its outputs are acknowledged, and every process is alive.

A consuming service's position is what it stored in PostgreSQL with its effects (the runner's
`consumer_offsets`, the truth its Kafka commits follow); its outputs are acknowledged when its
outbox is empty (a row leaves the outbox only after the broker acknowledged it). Drained, read
in this order so that nothing in flight can pass unseen: positions and outboxes, then every
topic's end offsets, then positions and outboxes again; drained when the two readings agree,
every outbox is empty and every position is at its topic's end. A service that moved between
the readings, or whose output is not yet acknowledged, may still produce into a topic read
by the next service, so that is not drained.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import end_offsets
from devstack.processes import ServiceProcess
from shared.kafka import aiokafka_connection
from shared.settings import KafkaSettings
from shared.topics import Topic

CONSUMERS = ("enrich", "score", "router")
# Each consumer's stored positions in the topics it reads ($1), and its outputs not yet
# acknowledged under the stack's topic prefix ($1).
POSITIONS_SQL = {
    service: f"SELECT topic, partition, next_offset FROM {service}.consumer_offsets"
    " WHERE topic = ANY($1::text[])"
    for service in ("enrich", "score", "router")
}
OUTBOX_SQL = {
    service: f"SELECT count(*) FROM {service}.outbox WHERE starts_with(topic, $1)"
    for service in ("enrich", "score", "router")
}
Position = tuple[str, int]  # (full topic name, partition)


def subscriptions(service: str) -> Sequence[Topic]:
    """The topics `service` consumes, from its own `Service` declaration."""
    return importlib.import_module(f"services.{service}.__main__").SERVICE.subscriptions  # type: ignore[no-any-return]


class ProcessDied(RuntimeError):
    """A service process ended during a benchmark step: nothing it measured holds."""


@dataclass(frozen=True)
class Reading:
    positions: dict[str, dict[Position, int]]  # per service: next offset to apply
    outboxes: dict[str, int]  # per service: records stored, not yet acknowledged


class DrainWatch:
    """Reads positions and ends for one stack (its database, broker and topic prefix)."""

    def __init__(self, *, database_url: str, bootstrap: str, prefix: str) -> None:
        self._url = database_url.replace("+asyncpg", "")
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._reads = {
            service: [t.full_name(prefix) for t in subscriptions(service)] for service in CONSUMERS
        }
        self._ends: AIOKafkaConsumer | None = None
        self._db: asyncpg.Connection | None = None
        self._partitions: list[TopicPartition] = []

    async def __aenter__(self) -> DrainWatch:
        self._db = await asyncpg.connect(self._url)
        self._ends = AIOKafkaConsumer(
            **aiokafka_connection(KafkaSettings(bootstrap_servers=self._bootstrap)),
            group_id=None,
            fetch_max_wait_ms=10,
        )
        await self._ends.start()
        await self._ends.topics()  # metadata of every topic (the step created them all)
        self._partitions = []
        for topic in sorted({t for topics in self._reads.values() for t in topics}):
            partitions = self._ends.partitions_for_topic(topic)
            if not partitions:
                raise RuntimeError(f"{topic} is not on the broker")
            self._partitions += [TopicPartition(topic, p) for p in sorted(partitions)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ends is not None:
            await self._ends.stop()
        if self._db is not None:
            await self._db.close()

    async def drained(self) -> bool:
        first = await self._read()
        ends = await self._end_offsets()
        second = await self._read()
        return is_drained(first, ends, second, reads=self._reads)

    async def wait(
        self, processes: Sequence[ServiceProcess], *, limit_s: float, every_s: float = 0.2
    ) -> float:
        """Seconds until drained (`limit_s` when it never is). Raises ProcessDied when a service
        process ended meanwhile."""
        started = time.monotonic()
        while True:
            _check_alive(processes)
            if await self.drained():
                return time.monotonic() - started
            if time.monotonic() - started >= limit_s:
                return limit_s
            await asyncio.sleep(every_s)

    async def _read(self) -> Reading:
        assert self._db is not None
        positions: dict[str, dict[Position, int]] = {}
        outboxes: dict[str, int] = {}
        for service in CONSUMERS:
            rows = await self._db.fetch(POSITIONS_SQL[service], self._reads[service])
            positions[service] = {(r[0], r[1]): r[2] for r in rows}
            outboxes[service] = await self._db.fetchval(OUTBOX_SQL[service], self._prefix)
        return Reading(positions, outboxes)

    async def _end_offsets(self) -> dict[Position, int]:
        assert self._ends is not None
        ends = await end_offsets(self._ends, self._partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


def is_drained(
    first: Reading,
    ends: dict[Position, int],
    second: Reading,
    *,
    reads: dict[str, list[str]],
) -> bool:
    """Drained (module doc): nothing moved between the readings taken before and after the end
    offsets, no output waits for its acknowledgement, and every service's position in every
    partition of every topic it reads (`reads`: service -> full topic names) is at its end (a
    partition it never stored a position for is at 0)."""
    if first != second or any(second.outboxes.values()):
        return False
    return all(
        second.positions[service].get(position, 0) >= end
        for service, topics in reads.items()
        for position, end in ends.items()
        if position[0] in topics
    )


def _check_alive(processes: Sequence[ServiceProcess]) -> None:
    for process in processes:
        if process.process is not None and process.process.poll() is not None:
            raise ProcessDied(
                f"{process.service} exited with {process.process.returncode} during the step"
                f" (log: {process.log_file})"
            )
