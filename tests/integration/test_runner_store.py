"""The runner's tables on the real PostgreSQL: what goes into the outbox comes back unchanged,
and one batch's statement advances offsets, stores its records and deletes acknowledged ones."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.consumer.store import PendingRecord, RunnerStore
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings

GROUP = "g"


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


def record(
    batch_id: uuid.UUID,
    seq: int,
    *,
    topic: str = "notes.out",
    key: bytes | None = b"k",
    value: bytes | None = b'{"text":"x"}',
    headers: tuple[tuple[str, bytes], ...] = (),
    source_partition: int = 1,
) -> PendingRecord:
    return PendingRecord(
        batch_id=batch_id,
        seq=seq,
        topic=topic,
        key=key,
        value=value,
        headers=headers,
        source_topic="notes",
        source_partition=source_partition,
    )


DLQ_HEADERS = (
    ("traceparent", b"00-abc-01"),
    ("bin", b"\x00\xff\x80 not utf-8"),
    ("empty", b""),
    ("traceparent", b"a repeated key keeps its place"),
    ("leadflow.error", "not JSON: unexpected character: ü".encode()),
    ("leadflow.service", b"enrich"),
    ("leadflow.source_topic", b"notes"),
    ("leadflow.source_partition", b"1"),
    ("leadflow.source_offset", b"41"),
)


async def finish(
    sessions: async_sessionmaker[AsyncSession],
    store: RunnerStore,
    *,
    next_offsets: dict[tuple[str, int], int],
    records: list[PendingRecord],
    acked: tuple[uuid.UUID, ...] = (),
) -> dict[tuple[str, int], int]:
    """One batch's runner statements in one transaction; the offsets it found."""
    async with unit_of_work(sessions) as session:
        found = await store.lock_offsets(session, next_offsets)
        await store.finish_batch(
            session,
            next_offsets=next_offsets,
            records=records,
            acked_batches=acked,
        )
    return found


async def test_records_with_many_headers_come_back_from_the_outbox_unchanged(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    store = RunnerStore(schema="enrich", group=GROUP)
    first, second = uuid.uuid4(), uuid.uuid4()
    stored = [
        record(first, 0, headers=DLQ_HEADERS, topic="notes.dlq", key=None),
        record(first, 1),  # no headers between two with headers: slices must not shift
        record(first, 2, headers=(("only", b"one"),), value=None),
        record(first, 3, headers=DLQ_HEADERS[:2], source_partition=1),
    ]
    await finish(sessions, store, next_offsets={("notes", 1): 42}, records=stored)

    async with unit_of_work(sessions) as session:
        leftovers = await store.leftover_outbox(session, partitions=[("notes", 1)])
    assert leftovers == stored

    # The next batch deletes the acknowledged first one in the same statement as it stores its
    # own, and never moves an offset backwards.
    later = [record(second, 0, headers=DLQ_HEADERS[3:], source_partition=1)]
    found = await finish(
        sessions,
        store,
        next_offsets={("notes", 1): 40, ("notes", 0): 7},
        records=later,
        acked=(first,),
    )
    assert found == {("notes", 1): 42, ("notes", 0): 0}  # partition 0's row created at 0
    async with unit_of_work(sessions) as session:
        assert await store.leftover_outbox(session, partitions=[("notes", 1)]) == later
    offsets = await db.fetch(
        "SELECT topic, partition, next_offset FROM enrich.consumer_offsets"
        " WHERE consumer_group = $1 ORDER BY partition",
        GROUP,
    )
    assert [tuple(r) for r in offsets] == [("notes", 0, 7), ("notes", 1, 42)]


async def test_a_batch_with_nothing_to_store_still_advances_and_clears(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    store = RunnerStore(schema="enrich", group=GROUP)
    batch = uuid.uuid4()
    await finish(sessions, store, next_offsets={("a", 0): 1}, records=[record(batch, 0)])
    await finish(
        sessions, store, next_offsets={("a", 0): 5, ("b", 2): 3}, records=[], acked=(batch,)
    )
    assert await db.fetchval("SELECT count(*) FROM enrich.outbox") == 0
    rows = await db.fetch(
        "SELECT topic, partition, next_offset FROM enrich.consumer_offsets ORDER BY topic"
    )
    assert [tuple(r) for r in rows] == [("a", 0, 5), ("b", 2, 3)]
