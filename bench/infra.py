"""The broker and PostgreSQL a benchmark run measures against: the same local processes as
`make run` (Tansu, embedded PostgreSQL), started once per `make bench`."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import BaseModel, SecretStr
from sqlalchemy import make_url

from devstack.broker import LocalBroker, free_port
from devstack.postgres import LocalPostgres
from shared.codec import encode
from shared.consumer import ConsumerRunner, Handler
from shared.db import create_engine, create_sessionmaker
from shared.kafka import aiokafka_connection, create_producer, ensure_topics
from shared.migrations import upgrade_to_head
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import ALL_TOPICS, Topic, all_topic_names

REPO = Path(__file__).resolve().parents[1]
MIGRATED_SERVICES = ("enrich", "score", "router", "sync")
PARTITIONS = 4


@dataclass
class BenchInfra:
    kafka_bootstrap: str
    postgres: LocalPostgres
    broker_pid: int | None = None

    def infrastructure_cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by the broker and by the PostgreSQL server (the postmaster
        with every backend, ended ones included: the postmaster reaps them)."""
        cpu = {"broker": cpu_seconds(self.broker_pid) if self.broker_pid else 0.0}
        postmaster = self.postgres.data_dir / "postmaster.pid"
        server = int(postmaster.read_text().split()[0]) if postmaster.exists() else None
        cpu["postgres"] = (
            cpu_seconds(server, reaped_children=True) + sum(map(cpu_seconds, _children(server)))
            if server
            else 0.0
        )
        return cpu

    async def fresh_database(self) -> str:
        """A new database with every service's migrations applied (asyncpg SQLAlchemy URL)."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.postgres.url("postgres", driver="postgresql"))
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        url = self.postgres.url(name)
        for service in MIGRATED_SERVICES:
            await asyncio.to_thread(
                upgrade_to_head,
                migrations_dir=REPO / "services" / service / "migrations",
                schema=service,
                database_url=url,
            )
        return url

    async def drop_database(self, url: str) -> None:
        """Drop a database `fresh_database` made (its connections closed first)."""
        name = make_url(url).database
        admin = await asyncpg.connect(self.postgres.url("postgres", driver="postgresql"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    async def delete_topics(self, prefix: str) -> None:
        """Delete every topic under `prefix`: the development broker keeps all it holds in
        memory, and a broker grown by earlier steps would slow the next."""
        admin = AIOKafkaAdminClient(
            **aiokafka_connection(KafkaSettings(bootstrap_servers=self.kafka_bootstrap))
        )
        await admin.start()
        try:
            await admin.delete_topics(all_topic_names(prefix))
        finally:
            await admin.close()

    async def fresh_topic_prefix(self, partitions: int = PARTITIONS) -> str:
        """A new prefix with every leadflow topic (and DLQ) created."""
        prefix = f"b{uuid.uuid4().hex[:8]}."
        settings = KafkaSettings(bootstrap_servers=self.kafka_bootstrap, topic_prefix=prefix)
        await ensure_topics(settings, partitions=partitions)
        return prefix


async def wait_until_handled(
    url: str,
    *,
    handled_sql: str,
    outbox_sql: str,
    expected: int,
    arguments: Sequence[object] = (),
) -> tuple[int, float]:
    """(messages handled while the clock ran, seconds) for a consumer benchmark: the clock starts
    when `handled_sql` first counts something (process start and group join left out, and what
    that first batch held with them) and stops when it counts `expected` and the service's
    outbox is empty (every output acknowledged). Both queries are given `arguments`."""
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        started: tuple[float, int] | None = None
        while True:
            seen = await connection.fetchval(handled_sql, *arguments)
            waiting = await connection.fetchval(outbox_sql, *arguments)
            if seen and started is None:
                started = (time.perf_counter(), seen)
            if seen >= expected and waiting == 0 and started is not None:
                return expected - started[1], max(time.perf_counter() - started[0], 1e-6)
            await asyncio.sleep(0.02)
    finally:
        await connection.close()


async def produce_all(
    kafka: KafkaSettings, topic: Topic, messages: Sequence[tuple[str, BaseModel]]
) -> None:
    """Produce (key, value) pairs and return once the broker acknowledged them all."""
    producer = create_producer(kafka, client_id="bench-loader")
    await producer.start()
    try:
        name = topic.full_name(kafka.topic_prefix)
        acks = [await producer.send(name, encode(v), key=k.encode()) for k, v in messages]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def consume_until_handled(
    *,
    url: str,
    kafka: KafkaSettings,
    service: str,
    subscriptions: list[Topic],
    handler: Handler,
    handled_sql: str,
    outbox_sql: str,
    expected: int,
    arguments: Sequence[object] = (),
) -> float:
    """Run the service's handler in its consumer runner (batches of 500) until
    `wait_until_handled` says `expected` are done; messages/s."""
    engine = create_engine(
        DatabaseSettings(url=SecretStr(url)), application_name=f"bench-{service}"
    )
    runner = ConsumerRunner(
        service=service,
        subscriptions=subscriptions,
        handler=handler,
        sessions=create_sessionmaker(engine),
        schema=service,
        kafka=kafka,
        consumer=ConsumerSettings(max_batch_records=500),
    )
    task = asyncio.create_task(runner.run())
    try:
        handled, elapsed = await wait_until_handled(
            url,
            handled_sql=handled_sql,
            outbox_sql=outbox_sql,
            expected=expected,
            arguments=arguments,
        )
    finally:
        runner.request_stop()
        await task
        await engine.dispose()
    return handled / elapsed


async def end_offsets(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """Each partition's end (the offset its next record gets), from the records themselves.
    The development broker answers ListOffsets with its last record batch's base offset + 1
    (docs/architecture.md, "Development and tests"), short of the end when that batch holds
    several records; so the last batch of each partition that holds any is fetched from there,
    and the end is the larger of its last offset + 1 and the high watermark the fetch reports.
    `consumer` has no group; its assignment is replaced."""
    listed = await consumer.end_offsets(list(partitions))
    ends = dict(listed)
    unread = {tp for tp, offset in listed.items() if offset > 0}
    consumer.assign(sorted(unread))
    for tp in unread:
        consumer.seek(tp, listed[tp] - 1)  # a record of the last batch: there is one
    deadline = time.monotonic() + 30
    while unread:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no fetch answer from {sorted(unread)} in 30 s")
        for tp, records in (await consumer.getmany(*unread, timeout_ms=500)).items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1, consumer.highwater(tp) or 0)
                unread.discard(tp)
    return ends


async def dead_letters(bootstrap: str, prefix: str) -> int:
    """Records on the dead-letter topics of every leadflow topic under `prefix`."""
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(KafkaSettings(bootstrap_servers=bootstrap)), fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic
        partitions = [
            TopicPartition(topic.dlq_name(prefix), partition)
            for topic in ALL_TOPICS
            for partition in consumer.partitions_for_topic(topic.dlq_name(prefix)) or ()
        ]
        return sum((await end_offsets(consumer, partitions)).values())
    finally:
        await consumer.stop()


@contextmanager
def local_infrastructure() -> Iterator[BenchInfra]:
    postgres = LocalPostgres(port=free_port())
    broker = LocalBroker(port=free_port())
    postgres.start()
    try:
        broker.start()
        try:
            yield BenchInfra(
                kafka_bootstrap=broker.bootstrap_servers, postgres=postgres, broker_pid=broker.pid
            )
        finally:
            broker.stop()
    finally:
        postgres.stop()


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of a live process (0 when it is gone), from /proc; with
    `reaped_children`, also what its ended and reaped children used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state is field 3, utime/stime 14/15, cutime/cstime 16/17 (man 5 proc).
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return children
