"""The consumer runner's delivery contract, on the real broker and database, in-process.

A tiny test topic and handler stand in for a service: the handler writes one row per message
and returns one output per message. The row is a plain INSERT into a table keyed by the note, so
a second application of the same message raises a unique violation. The runner does not let
that error end it: it handles the batch again one message at a time and dead-letters what
fails alone, so a double application shows up as the handler's `second_applications`, as dead
letters, and as missing or repeated outputs. The tests on the exactly-once contract check all
of them: no second application, nothing dead-lettered, each note's effect stored once and its
output produced once (counted, not compared as a set).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from pydantic import BaseModel, SecretStr
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from devstack.processes import StackAddresses
from shared.consumer import ConsumerRunner, InvalidMessage, Message, Output
from shared.consumer.failures import ConcurrentUpdate
from shared.contracts.base import Contract
from shared.db import create_engine, create_sessionmaker
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.telemetry import RETRIES, REWOUND_RECORDS
from shared.topics import Topic
from tests.fixtures.infra import Infrastructure
from tests.fixtures.outage import RestartablePostgres, restartable_postgres
from tests.fixtures.pipeline import Pipeline

__all__ = ["restartable_postgres"]  # the fixture, for the restart test


class Note(Contract):
    text: str


class NoteHandler:
    """Writes each note; fails on "boom" (a bug), refuses "refuse" (a domain reason)."""

    def __init__(self, output_topic: Topic) -> None:
        self.output_topic = output_topic
        self.calls = 0
        self.transient_failures_left = 0
        # Notes whose INSERT hit the primary key: applied a second time.
        self.second_applications: list[str] = []

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        self.calls += 1
        if self.transient_failures_left:
            self.transient_failures_left -= 1
            raise ConcurrentUpdate("simulated")
        outputs = []
        for message in messages:
            assert isinstance(message.value, Note)
            if message.value.text == "boom":
                raise ValueError("a bug in the handler")
            if message.value.text == "refuse":
                raise InvalidMessage(message, "notes saying 'refuse' are refused")
            try:
                await session.execute(
                    text("INSERT INTO public.effects (note) VALUES (:note)"),
                    {"note": message.value.text},
                )
            except IntegrityError:
                self.second_applications.append(message.value.text)
                raise
            outputs.append(Output(self.output_topic, key="k", value=message.value))
        return outputs


class Harness:
    def __init__(self, infra: Infrastructure, database_url: str, prefix: str) -> None:
        self.infra = infra
        self.database_url = database_url
        self.prefix = prefix
        self.source = Topic("notes", Note, key="any", producer="test")
        self.output = Topic("notes.out", Note, key="any", producer="test")
        self.handler = NoteHandler(self.output)
        self.kafka = KafkaSettings(
            bootstrap_servers=infra.kafka_bootstrap,
            topic_prefix=prefix,
            session_timeout_ms=2000,  # the development broker holds a join this long
            heartbeat_interval_ms=500,
        )
        self.engine = create_engine(
            DatabaseSettings(url=SecretStr(database_url)), application_name="runner-test"
        )
        self.group = f"{prefix}group"

    def runner(self) -> ConsumerRunner:
        return ConsumerRunner(
            service="test",
            subscriptions=[self.source],
            handler=self.handler,
            sessions=create_sessionmaker(self.engine),
            schema="enrich",  # any schema holding the runner's tables
            kafka=self.kafka,
            consumer=ConsumerSettings(retry_initial_backoff_s=0.05, retry_max_backoff_s=0.2),
            group_id=self.group,
        )

    async def send(self, *notes: str, compression: str | None = None) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.infra.kafka_bootstrap, compression_type=compression
        )
        await producer.start()
        try:
            for i, note in enumerate(notes):
                await producer.send_and_wait(
                    self.source.full_name(self.prefix),
                    value=Note(text=note).model_dump_json().encode(),
                    key=str(i).encode(),
                )
        finally:
            await producer.stop()

    def reader(self) -> Pipeline:
        return Pipeline(
            addresses=StackAddresses(
                kafka_bootstrap=self.infra.kafka_bootstrap,
                database_url=self.database_url,
                topic_prefix=self.prefix,
            ),
            log_dir=None,  # type: ignore[arg-type]
        )


@pytest.fixture
async def harness(
    infrastructure: Infrastructure, database_url: str, topic_prefix: str, db: asyncpg.Connection
) -> AsyncIterator[Harness]:
    await db.execute("CREATE TABLE public.effects (note text PRIMARY KEY)")
    harness = Harness(infrastructure, database_url, topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap)
    await admin.start()
    names = [
        harness.source.full_name(topic_prefix),
        harness.output.full_name(topic_prefix),
        harness.source.dlq_name(topic_prefix),
    ]
    await admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names])
    await admin.close()
    yield harness
    await harness.engine.dispose()


async def run_until(
    runner: ConsumerRunner, condition: Callable[[], Any], *, timeout_s: float = 30
) -> None:
    task = asyncio.create_task(runner.run())
    deadline = time.monotonic() + timeout_s
    try:
        while not await condition():
            if task.done():
                task.result()
                raise AssertionError("runner ended before the condition held")
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.1)
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, timeout=30)


def count(db: asyncpg.Connection, query: str, expected: int) -> Callable[[], Any]:
    async def holds() -> bool:
        return bool(await db.fetchval(query) == expected)

    return holds


def consumed(db: asyncpg.Connection, harness: Harness, expected: int) -> Callable[[], Any]:
    """The runner stored offsets past `expected` source records (applied or dead-lettered):
    everything sent was taken, whatever became of it (the assertions after say what)."""

    async def holds() -> bool:
        stored = await db.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM enrich.consumer_offsets"
            " WHERE consumer_group = $1",
            harness.group,
        )
        return bool(stored == expected)

    return holds


async def assert_each_applied_and_produced_once(
    harness: Harness, handler: NoteHandler, notes: Sequence[str], *, stored: Sequence[str]
) -> None:
    """The exactly-once contract on what the runs left: no note applied a second time, nothing
    dead-lettered, each note's effect stored once and its output on the topic once."""
    assert handler.second_applications == [], "applied a second time"
    reader = harness.reader()
    dead = await reader.read_all(harness.source.dlq_name(harness.prefix), settle_s=1)
    assert [(r.value, r.headers.get("leadflow.error")) for r in dead] == [], "dead-lettered"
    assert Counter(stored) == Counter(notes), "effects stored (note: times)"
    out = await reader.read_all(harness.output.full_name(harness.prefix), settle_s=1)
    assert Counter(orjson_text(r.value) for r in out) == Counter(notes), "outputs (note: times)"


async def stored_notes(db: asyncpg.Connection) -> list[str]:
    return [r["note"] for r in await db.fetch("SELECT note FROM effects")]


NOTES = [f"note-{i}" for i in range(20)]


def kafka_committed(runner: ConsumerRunner, expected: int) -> Callable[[], Any]:
    """The runner's group committed offsets summing to `expected` on its assigned partitions."""

    async def holds() -> bool:
        consumer = runner._consumer
        if consumer is None or not runner._assigned:
            return False
        committed = [await consumer.committed(tp) or 0 for tp in runner._assigned]
        return sum(committed) == expected

    return holds


async def test_the_next_member_starts_where_postgresql_stored_not_where_kafka_committed(
    harness: Harness, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.send(*NOTES)
    first = harness.runner()

    async def crash_before_commit(*, force: bool) -> None:
        return None

    monkeypatch.setattr(first, "_commit", crash_before_commit)
    await run_until(first, consumed(db, harness, len(NOTES)))

    # Kafka never saw a commit; PostgreSQL stored every offset. The next member starts there,
    # fetches nothing again, and brings Kafka's committed offsets up to the stored ones.
    second = harness.runner()
    calls_before = harness.handler.calls
    await run_until(second, kafka_committed(second, len(NOTES)))
    assert harness.handler.calls == calls_before
    await assert_each_applied_and_produced_once(
        harness, harness.handler, NOTES, stored=await stored_notes(db)
    )


async def test_a_redelivered_batch_is_applied_once(
    harness: Harness, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records below the stored offset are skipped, whoever delivers them again (two members
    that both believe they own a partition during a rebalance; here, a member made to start
    from the log's beginning)."""
    await harness.send(*NOTES)
    await run_until(harness.runner(), consumed(db, harness, len(NOTES)))

    second = harness.runner()
    store = second._store

    async def nothing_stored(session: Any, positions: Any) -> dict[Any, int]:
        return {}

    monkeypatch.setattr(store, "stored_offsets", nothing_stored)
    calls_before = harness.handler.calls
    await run_until(second, kafka_committed(second, len(NOTES)))
    assert harness.handler.calls == calls_before  # skipped before reaching the handler
    await assert_each_applied_and_produced_once(
        harness, harness.handler, NOTES, stored=await stored_notes(db)
    )


async def test_a_batch_the_database_lost_is_applied_again_once(
    harness: Harness, db: asyncpg.Connection
) -> None:
    """A failover to a standby that missed the last transactions: PostgreSQL lost the last
    batch's effects and offsets, Kafka kept the commit made after them. The runner goes back to
    the stored offsets and applies those records again, once; its outputs go out again (the
    outputs' at-least-once, deduplicated downstream by message id)."""
    kept, lost = NOTES[:12], NOTES[12:]
    await harness.send(*kept)
    await run_until(harness.runner(), consumed(db, harness, len(kept)))
    before_loss = {
        (r["topic"], r["partition"]): r["next_offset"]
        for r in await db.fetch(
            "SELECT topic, partition, next_offset FROM enrich.consumer_offsets"
            " WHERE consumer_group = $1",
            harness.group,
        )
    }
    await harness.send(*lost)
    first = harness.runner()
    await run_until(first, kafka_committed(first, len(NOTES)))

    # The transactions that applied `lost` never reached the promoted standby.
    await db.execute("DELETE FROM effects WHERE note = ANY($1::text[])", lost)
    for (topic, partition), next_offset in before_loss.items():
        await db.execute(
            "UPDATE enrich.consumer_offsets SET next_offset = $1"
            " WHERE consumer_group = $2 AND topic = $3 AND partition = $4",
            next_offset,
            harness.group,
            topic,
            partition,
        )
    source = harness.source.full_name(harness.prefix)
    rewound_before = REWOUND_RECORDS.labels("test", source)._value.get()

    second = harness.runner()
    await run_until(second, consumed(db, harness, len(NOTES)))

    assert harness.handler.second_applications == []
    assert Counter(await stored_notes(db)) == Counter(NOTES), "each note's effect once"
    assert REWOUND_RECORDS.labels("test", source)._value.get() - rewound_before == len(lost)
    out = await harness.reader().read_all(harness.output.full_name(harness.prefix), settle_s=1)
    assert Counter(orjson_text(r.value) for r in out) == Counter(NOTES + lost)
    # Kafka's committed offsets follow the stored ones again.
    reader = AIOKafkaConsumer(
        bootstrap_servers=harness.infra.kafka_bootstrap, group_id=harness.group
    )
    await reader.start()
    try:
        committed = [
            await reader.committed(TopicPartition(topic, partition)) or 0
            for topic, partition in before_loss
        ]
    finally:
        await reader.stop()
    assert sum(committed) == len(NOTES)


async def test_zstd_compressed_batches_are_consumed(
    harness: Harness, db: asyncpg.Connection
) -> None:
    """The production topics store zstd batches (deploy/components/strimzi-kafka/topics.yaml):
    the runner's consumer decodes them (aiokafka's zstd extra)."""
    await harness.send(*NOTES, compression="zstd")
    await run_until(harness.runner(), consumed(db, harness, len(NOTES)))
    await assert_each_applied_and_produced_once(
        harness, harness.handler, NOTES, stored=await stored_notes(db)
    )


async def test_outputs_stored_before_a_crash_are_produced_by_the_next_owner(
    harness: Harness, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.send(*NOTES)
    first = harness.runner()

    async def crash_before_produce(pending: Any) -> None:
        raise RuntimeError("process died between database commit and produce")

    monkeypatch.setattr(first, "_send", crash_before_produce)
    with pytest.raises(RuntimeError, match="process died"):
        await run_until(first, count(db, "SELECT count(*) FROM effects", 20))
    assert await db.fetchval("SELECT count(*) FROM effects") > 0
    assert await db.fetchval("SELECT count(*) FROM enrich.outbox") > 0

    second = harness.runner()
    await run_until(second, count(db, "SELECT count(*) FROM enrich.outbox", 0))
    await run_until(harness.runner(), consumed(db, harness, len(NOTES)))
    await assert_each_applied_and_produced_once(
        harness, harness.handler, NOTES, stored=await stored_notes(db)
    )


async def test_a_batch_whose_acknowledgement_failed_goes_out_again_before_later_batches(
    harness: Harness, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledgements are awaited while the next batch runs (module doc, step 4): a batch the
    broker did not acknowledge is sent again, whole, before any later batch's records."""
    await harness.send(*NOTES)
    runner = harness.runner()
    # Small batches; a long poll, so the next batch (not an empty poll) is what settles one.
    runner._settings = runner._settings.model_copy(
        update={"max_batch_records": 4, "poll_timeout_ms": 3000}
    )
    sends: list[list[str]] = []
    lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    real_send = runner._send

    def lose() -> None:
        if not lost.done():
            lost.set_exception(KafkaTimeoutError("simulated: no acknowledgement"))

    async def second_acknowledgement_lost(pending: Any) -> Any:
        # The second batch (the first may be settled early, by the new owner's outbox check).
        if not pending:
            return await real_send(pending)
        sends.append([orjson_text(record.value) for record in pending])
        if len(sends) != 2 or lost.done():
            if len(sends) > 2:
                lose()  # at the latest when a later batch is sent
            return await real_send(pending)
        asyncio.get_running_loop().call_later(1, lose)
        return [lost]  # nothing reached the broker

    monkeypatch.setattr(runner, "_send", second_acknowledgement_lost)
    all_applied_and_produced = count(
        db,
        "SELECT (SELECT count(*) FROM effects) * 100 + (SELECT count(*) FROM enrich.outbox)",
        20 * 100,
    )
    await run_until(runner, all_applied_and_produced)

    out = await harness.reader().read_all(harness.output.full_name(harness.prefix), settle_s=1)
    texts = [r.json()["text"] for r in out]  # one key, so one partition: the produced order
    assert sorted(texts) == sorted(NOTES)
    first, lost_batch = sends[0], sends[1]
    assert texts[: len(first) + len(lost_batch)] == first + lost_batch


async def test_only_the_failing_message_is_dead_lettered(
    harness: Harness, db: asyncpg.Connection
) -> None:
    await harness.send("a", "boom", "b", "refuse", "c")
    await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", 3))
    assert {r["note"] for r in await db.fetch("SELECT note FROM effects")} == {"a", "b", "c"}
    dlq = await harness.reader().read(
        harness.source.dlq_name(harness.prefix), until=lambda records: len(records) >= 2
    )
    reasons = {orjson_text(r.value): r.headers["leadflow.error"].decode() for r in dlq}
    assert reasons["boom"] == "handler error: ValueError: a bug in the handler"
    assert reasons["refuse"] == "notes saying 'refuse' are refused"


async def test_a_transient_failure_is_retried_and_nothing_is_lost(
    harness: Harness, db: asyncpg.Connection
) -> None:
    harness.handler.transient_failures_left = 3
    await harness.send(*NOTES)
    await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", 20))
    assert harness.handler.transient_failures_left == 0
    dlq = await harness.reader().read_all(harness.source.dlq_name(harness.prefix), settle_s=1)
    assert dlq == []


def orjson_text(value: bytes | None) -> str:
    assert value is not None
    return str(Note.model_validate_json(value).text)


async def test_acknowledged_outputs_leave_the_outbox_when_no_batch_follows(
    harness: Harness, db: asyncpg.Connection
) -> None:
    # The deletion of acknowledged rows rides on the next batch's transaction; with no next
    # batch (an idle poll) it must happen anyway, while the runner runs.
    await harness.send(*NOTES)

    async def handled_and_cleared() -> bool:
        effects = await db.fetchval("SELECT count(*) FROM effects")
        outbox = await db.fetchval("SELECT count(*) FROM enrich.outbox")
        return bool(effects == len(NOTES) and outbox == 0)

    await run_until(harness.runner(), handled_and_cleared)
    # Produced in batches per partition: on the partition `send` (the Java client) would choose.
    out = await read_raw(harness, harness.output.full_name(harness.prefix), expected=len(NOTES))
    assert {r.partition for r in out} == {DefaultPartitioner()(b"k", [0, 1], [0, 1])}
    assert sorted(Note.model_validate_json(r.value or b"").text for r in out) == sorted(NOTES)


async def test_dead_letter_headers_survive_a_crash_before_produce(
    harness: Harness, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_headers = [("trace", b"\x00\xff"), ("trace", b"second"), ("empty", b"")]
    producer = AIOKafkaProducer(bootstrap_servers=harness.infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            harness.source.full_name(harness.prefix),
            value=b"not json",
            key=b"k",
            partition=0,
            headers=source_headers,
        )
    finally:
        await producer.stop()
    first = harness.runner()

    async def crash_before_produce(pending: Any) -> None:
        raise RuntimeError("process died between database commit and produce")

    monkeypatch.setattr(first, "_send", crash_before_produce)
    with pytest.raises(RuntimeError, match="process died"):
        await run_until(first, count(db, "SELECT count(*) FROM enrich.outbox", 1))

    await run_until(harness.runner(), count(db, "SELECT count(*) FROM enrich.outbox", 0))
    [dead] = await read_raw(harness, harness.source.dlq_name(harness.prefix), expected=1)
    assert dead.value == b"not json"
    assert dead.key == b"k"
    assert [(k, bytes(v)) for k, v in dead.headers] == [
        *source_headers,
        ("leadflow.error", dead_reason(dead.headers)),
        ("leadflow.service", b"test"),
        ("leadflow.source_topic", harness.source.full_name(harness.prefix).encode()),
        ("leadflow.source_partition", b"0"),
        ("leadflow.source_offset", b"0"),
    ]
    assert dead_reason(dead.headers).startswith(b"not JSON")


async def test_a_database_restart_is_ridden_out(
    harness: Harness, restartable_postgres: RestartablePostgres
) -> None:
    # The runner holds its connection between batches (no ping per checkout): a restart kills
    # it, and the next use must fail as transient, be retried on a fresh connection, lose
    # nothing and apply nothing twice.
    url = restartable_postgres.database_url
    plain_url = url.replace("+asyncpg", "")
    setup = await asyncpg.connect(plain_url)
    await setup.execute("CREATE TABLE public.effects (note text PRIMARY KEY)")
    await setup.close()
    on_restartable = Harness(harness.infra, url, harness.prefix)

    async def consumed_records() -> int:
        connection = await asyncpg.connect(plain_url)
        try:
            return int(
                await connection.fetchval(
                    "SELECT coalesce(sum(next_offset), 0) FROM enrich.consumer_offsets"
                    " WHERE consumer_group = $1",
                    on_restartable.group,
                )
            )
        finally:
            await connection.close()

    async def outbox_rows() -> int:
        connection = await asyncpg.connect(plain_url)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM enrich.outbox"))
        finally:
            await connection.close()

    retries_before = retries_of("test")
    runner = on_restartable.runner()
    task = asyncio.create_task(runner.run())
    try:
        await on_restartable.send(*NOTES)
        await wait_for_value(consumed_records, len(NOTES), task)
        # Idle, its outbox cleared: the next statement on its held connection is the next
        # batch's, and the restart fails it (not a clean-up's, which is not retried but left).
        await wait_for_value(outbox_rows, 0, task)
        await asyncio.to_thread(restartable_postgres.stop)  # fast shutdown: connections cut
        await asyncio.sleep(0.5)
        await asyncio.to_thread(restartable_postgres.start)
        later = [f"later-{i}" for i in range(20)]
        await on_restartable.send(*later)
        await wait_for_value(consumed_records, len(NOTES) + len(later), task)
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, timeout=30)
        await on_restartable.engine.dispose()
    assert retries_of("test") > retries_before
    check = await asyncpg.connect(plain_url)
    try:
        stored = await stored_notes(check)
    finally:
        await check.close()
    await assert_each_applied_and_produced_once(
        harness, on_restartable.handler, [*NOTES, *later], stored=stored
    )


async def wait_for_value(
    value: Callable[[], Any], expected: int, task: asyncio.Task[None], timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if task.done():
            task.result()
            raise AssertionError("runner ended")
        try:
            if await value() == expected:
                return
        except (OSError, asyncpg.PostgresError):
            pass  # the server is restarting
        assert time.monotonic() < deadline, "value not reached in time"
        await asyncio.sleep(0.1)


def retries_of(service: str) -> float:
    return sum(
        sample.value
        for metric in RETRIES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("service") == service
    )


def dead_reason(headers: Sequence[tuple[str, bytes]]) -> bytes:
    return next(bytes(v) for k, v in headers if k == "leadflow.error")


async def read_raw(harness: Harness, topic: str, *, expected: int) -> list[Any]:
    """Records as the broker holds them (headers as a list: order and repeats kept)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=harness.infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + 20
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            records += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert len(records) == expected
    return records
