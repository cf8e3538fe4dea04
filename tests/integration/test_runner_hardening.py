"""The consumer runner against what goes wrong around it, on the real broker and database: a
topic deleted and re-created under its stored offsets, a slow database, a poison record whose
handler gets fixed, a crash whose leftovers are split between two new owners; and the operator
commands that answer them (`reset-offsets`, `replay-dead-letters`), called as the shell calls
them.

The harness is `test_consumer_runner`'s (a test topic of two partitions, the runner's tables in
the `enrich` schema, effects in `public.effects`), with a handler of its own here that keys each
output as its input and can be made to refuse a note or to time out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.score.__main__ import SERVICE as SCORE
from services.score.config import ScoreSettings
from shared.consumer import InvalidMessage, Message, Output
from shared.consumer.operations import REPLAYED_FROM, replay_dead_letters, reset_offsets
from shared.consumer.runner import StoredOffsetsAhead
from shared.db import create_sessionmaker
from shared.operator import OperatorError
from shared.settings import DatabaseSettings, KafkaSettings
from shared.topics import Topic
from tests.fixtures.infra import Infrastructure
from tests.integration.test_consumer_runner import (
    Harness,
    Note,
    consumed,
    count,
    harness,
    run_until,
    stored_notes,
)

__all__ = ["harness"]  # the fixture


class KeyedNotes:
    """Writes each note (a second application raises: primary key) and produces it under its
    input's key. Refuses the notes in `refusing` (until fixed); its first `statement_timeouts`
    calls hit a statement timeout (a slow database)."""

    def __init__(self, output: Topic) -> None:
        self.output = output
        self.refusing: set[str] = set()
        self.statement_timeouts = 0
        self.calls = 0

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        self.calls += 1
        if self.statement_timeouts:
            self.statement_timeouts -= 1
            await session.execute(text("SET LOCAL statement_timeout = '50ms'"))
            await session.execute(text("SELECT pg_sleep(1)"))
        outputs = []
        for message in messages:
            assert isinstance(message.value, Note)
            if message.value.text in self.refusing:
                raise InvalidMessage(message, "refused until the handler is fixed")
            await session.execute(
                text("INSERT INTO public.effects (note) VALUES (:note)"),
                {"note": message.value.text},
            )
            key = (message.key or b"").decode()
            outputs.append(Output(self.output, key=key, value=message.value))
        return outputs


@pytest.fixture
def keyed(harness: Harness) -> KeyedNotes:
    harness.handler = KeyedNotes(harness.output)  # type: ignore[assignment]
    return harness.handler  # type: ignore[return-value]


async def produce(harness: Harness, notes: Sequence[str], *, partition: int | None = None) -> None:
    """Each note keyed by its text, on `partition` (else by key)."""
    producer = AIOKafkaProducer(bootstrap_servers=harness.infra.kafka_bootstrap)
    await producer.start()
    try:
        for note in notes:
            await producer.send_and_wait(
                harness.source.full_name(harness.prefix),
                value=Note(text=note).model_dump_json().encode(),
                key=note.encode(),
                partition=partition,
            )
    finally:
        await producer.stop()


async def recreate(harness: Harness, name: str, *, partitions: int) -> None:
    """Delete the topic and create it again, empty (the broker may take a moment to forget it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=harness.infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
        deadline = time.monotonic() + 30
        while True:
            try:
                await admin.create_topics(
                    [NewTopic(name, num_partitions=partitions, replication_factor=1)]
                )
                return
            except KafkaError:
                assert time.monotonic() < deadline, f"{name} could not be created again"
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


@pytest.mark.slow  # about 18 s: `make test-slow` (make test stays within 20 minutes)
async def test_a_deleted_and_recreated_topic_stops_the_runner_instead_of_skipping_its_records(
    harness: Harness, keyed: KeyedNotes, db: asyncpg.Connection
) -> None:
    before = [f"before-{i}" for i in range(20)]
    await produce(harness, before)
    await run_until(harness.runner(), consumed(db, harness, len(before)))
    source = harness.source.full_name(harness.prefix)
    await recreate(harness, source, partitions=2)
    after = [f"after-{i}" for i in range(4)]  # fewer than before: every offset below the stored
    await produce(harness, after)

    with pytest.raises(StoredOffsetsAhead) as stopped:
        await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", 24))
    message = str(stopped.value)
    assert f"{source}[{stopped.value.partition}] ends at offset" in message
    assert f"the next offset stored for it is {stopped.value.stored}" in message
    assert f"reset-offsets --topic {source} --partition {stopped.value.partition}" in message
    assert stopped.value.broker_end < stopped.value.stored
    assert sorted(await stored_notes(db)) == sorted(before)  # nothing skipped, nothing applied

    resets = await reset_offsets(
        kafka=harness.kafka,
        sessions=create_sessionmaker(harness.engine),
        schema="enrich",
        group=harness.group,
        topic=source,
        partition=None,
        to=None,  # earliest
    )
    assert [(r.partition, r.next_offset) for r in resets] == [(0, 0), (1, 0)]
    assert sum(r.stored_before or 0 for r in resets) == len(before)

    await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", 24))
    assert sorted(await stored_notes(db)) == sorted(before + after)


async def test_reset_offsets_refuses_while_the_consumer_runs(
    harness: Harness, keyed: KeyedNotes, db: asyncpg.Connection
) -> None:
    await produce(harness, ["one", "two"])
    runner = harness.runner()
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(consumed(db, harness, 2), task)
        with pytest.raises(OperatorError, match="has live members"):
            await reset_offsets(
                kafka=harness.kafka,
                sessions=create_sessionmaker(harness.engine),
                schema="enrich",
                group=harness.group,
                topic=harness.source.full_name(harness.prefix),
                partition=None,
                to=0,
            )
    finally:
        runner.request_stop()
        await asyncio.wait_for(task, timeout=30)
    assert await consumed(db, harness, 2)()  # the stored offsets are untouched


async def test_a_statement_timeout_is_retried_and_never_dead_lettered(
    harness: Harness, keyed: KeyedNotes, db: asyncpg.Connection
) -> None:
    keyed.statement_timeouts = 3
    notes = [f"slow-{i}" for i in range(10)]
    await produce(harness, notes)
    await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", len(notes)))

    assert keyed.statement_timeouts == 0
    assert sorted(await stored_notes(db)) == sorted(notes)  # each once (primary key)
    reader = harness.reader()
    dead = await reader.read_all(harness.source.dlq_name(harness.prefix), settle_s=1)
    assert [(r.value, r.headers.get("leadflow.error")) for r in dead] == []


@pytest.mark.slow  # about 17 s: `make test-slow` (make test stays within 20 minutes)
async def test_a_dead_letter_replayed_once_its_handler_is_fixed_is_applied(
    harness: Harness, keyed: KeyedNotes, db: asyncpg.Connection
) -> None:
    keyed.refusing = {"poison"}
    await produce(harness, ["a", "poison", "b"])
    await run_until(harness.runner(), consumed(db, harness, 3))
    dlq = harness.source.dlq_name(harness.prefix)
    reader = harness.reader()
    [letter] = await reader.read(dlq, until=lambda records: len(records) >= 1)
    assert Note.model_validate_json(letter.value or b"").text == "poison"
    assert sorted(await stored_notes(db)) == ["a", "b"]

    keyed.refusing = set()  # the handler is fixed
    replay = await replay_dead_letters(
        kafka=harness.kafka, service="test", topic=harness.source, limit=None
    )
    assert (replay.replayed, replay.passed_over) == (1, 0)
    await run_until(harness.runner(), count(db, "SELECT count(*) FROM effects", 3))
    assert sorted(await stored_notes(db)) == ["a", "b", "poison"]

    replayed = [
        r
        for r in await reader.read_all(harness.source.full_name(harness.prefix), settle_s=1)
        if REPLAYED_FROM in r.headers
    ]
    assert [(r.key, r.value) for r in replayed] == [(letter.key, letter.value)]
    assert replayed[0].headers[REPLAYED_FROM] == f"{dlq}[{letter.partition}]@0".encode()
    assert "leadflow.error" not in replayed[0].headers
    # Its position on the DLQ is committed: a second run has nothing to replay.
    again = await replay_dead_letters(
        kafka=harness.kafka, service="test", topic=harness.source, limit=None
    )
    assert again.replayed == 0


async def test_leftover_outputs_are_resent_by_the_new_owner_of_their_own_input_partition(
    harness: Harness, keyed: KeyedNotes, db: asyncpg.Connection
) -> None:
    """A batch spanning both partitions is stored and the process dies before sending its
    outputs; the partitions are then given to two consumers, one each: each sends exactly the
    outputs of its own partition's records, in their order."""
    source = harness.source.full_name(harness.prefix)
    by_partition = {p: [f"p{p}-{i}" for i in range(5)] for p in (0, 1)}
    for partition, notes in by_partition.items():
        await produce(harness, notes, partition=partition)

    crashed = harness.runner()
    crashed._consumer = reader = AIOKafkaConsumer(
        bootstrap_servers=harness.infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        batch = await fetch_both(reader, source, expected=10)
        decoded, dead = crashed._decode([r for rs in batch.values() for r in rs])
        await crashed._store_batch(batch, decoded, dead)  # stored; never sent: the crash
    finally:
        await reader.stop()
        await crashed._drop_connection()
    assert await db.fetchval("SELECT count(*) FROM enrich.outbox") == 10

    output = harness.output.full_name(harness.prefix)
    sent: list[Any] = []
    for partition, notes in by_partition.items():
        owner = harness.runner()
        owner._producer = await owner._start_producer()
        try:
            owner.on_assigned({TopicPartition(source, partition)})
            async with owner._lock:
                await owner._produce_leftovers()
        finally:
            await owner._producer.stop()
            await owner._drop_connection()
        now = await harness.reader().read_all(output, settle_s=1)
        new = [
            r for r in now if (r.partition, r.offset) not in {(s.partition, s.offset) for s in sent}
        ]
        assert sorted(Note.model_validate_json(r.value or b"").text for r in new) == sorted(
            notes
        ), f"the owner of partition {partition} re-sent other partitions' outputs"
        # In the order of their inputs, on each output partition.
        for out_partition in {r.partition for r in new}:
            texts = [
                Note.model_validate_json(r.value or b"").text
                for r in sorted(new, key=lambda r: r.offset)
                if r.partition == out_partition
            ]
            assert texts == [t for t in notes if t in texts]
        sent += new
        # Only its own rows leave the outbox: the batch's others are still the next owner's.
        left = await db.fetch("SELECT DISTINCT source_partition FROM enrich.outbox")
        assert {r["source_partition"] for r in left} == ({1} if partition == 0 else set())


async def fetch_both(
    consumer: AIOKafkaConsumer, topic: str, *, expected: int
) -> dict[TopicPartition, list[Any]]:
    """Every record of both partitions of `topic`, as one batch (what a poll may return)."""
    consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    batch: dict[TopicPartition, list[Any]] = {}
    deadline = time.monotonic() + 20
    while sum(len(rs) for rs in batch.values()) < expected:
        assert time.monotonic() < deadline, "records not fetched in time"
        for tp, records in (await consumer.getmany(timeout_ms=500)).items():
            batch.setdefault(tp, []).extend(records)
    return dict(sorted(batch.items()))


async def wait_until(condition: Any, task: asyncio.Task[None], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if task.done():
            task.result()
            raise AssertionError("runner ended")
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_the_shell_runs_the_runner_commands_of_a_consuming_service(
    infrastructure: Infrastructure,
    database_url: str,
    topic_prefix: str,
    db: asyncpg.Connection,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ScoreSettings(
        database=DatabaseSettings(url=database_url),
        kafka=KafkaSettings(
            bootstrap_servers=infrastructure.kafka_bootstrap, topic_prefix=topic_prefix
        ),
    )

    async def shell(*argv: str) -> int:
        args = SCORE._parser().parse_args(argv)
        command = next(c for c in SCORE._commands() if c.name == args.command)
        return await SCORE._operate(command, settings, args)

    assert await shell("reset-offsets", "--topic", "events.enriched", "--to", "7", "--json") == 0
    stored = await db.fetch(
        "SELECT partition, next_offset FROM score.consumer_offsets"
        " WHERE consumer_group = $1 AND topic = $2 ORDER BY partition",
        f"{topic_prefix}leadflow-score",
        f"{topic_prefix}events.enriched",
    )
    assert [(r["partition"], r["next_offset"]) for r in stored] == [(p, 7) for p in range(4)]
    assert '"next_offset": 7' in capsys.readouterr().out

    assert await shell("replay-dead-letters", "--topic", "events.enriched") == 0
    assert "replayed 0 dead letters of score" in capsys.readouterr().out
    assert await shell("reset-offsets", "--topic", "leads.scored", "--to", "earliest") == 1
    assert "score does not consume leads.scored" in capsys.readouterr().err
