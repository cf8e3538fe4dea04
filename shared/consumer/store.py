"""The runner's own tables, in the consuming service's schema.

- `consumer_offsets`: the next offset to apply per (group, topic, partition), written in the same
  transaction as the handler's effects. A redelivered record below it is skipped: this is what
  makes a batch's effects happen exactly once, whatever Kafka redelivers.
- `outbox`: the records a committed batch must produce. Rows are deleted after the broker
  acknowledged them (by the next batch's transaction, or on its own when none comes); rows left
  by a crash are produced again when their partition is next assigned.

`create_runner_tables` is called by each service's first migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeAlias

import asyncpg
from alembic import op
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def create_runner_tables(schema: str) -> None:
    """Alembic operation: create the runner's tables in `schema`."""
    op.execute(
        f"""
        CREATE TABLE "{schema}".consumer_offsets (
            consumer_group text NOT NULL,
            topic text NOT NULL,
            partition integer NOT NULL,
            next_offset bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer_group, topic, partition)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE "{schema}".outbox (
            batch_id uuid NOT NULL,
            seq integer NOT NULL,
            topic text NOT NULL,
            key bytea,
            value bytea,
            header_keys text[] NOT NULL,
            header_values bytea[] NOT NULL,
            source_topic text NOT NULL,
            source_partition integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (batch_id, seq)
        )
        """
    )
    op.execute(
        f'CREATE INDEX outbox_source_idx ON "{schema}".outbox (source_topic, source_partition)'
    )


class PendingRecord(NamedTuple):
    """A record committed to the outbox and not yet acknowledged by the broker. (A named tuple:
    one is built per output, and a frozen dataclass's `__init__` cost ~3% of the runner's CPU.)"""

    batch_id: uuid.UUID
    seq: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    source_topic: str
    source_partition: int


Position: TypeAlias = tuple[str, int]
"""(topic, partition)."""


class RunnerStore:
    """SQL for the runner's tables. Every method runs in the caller's transaction.

    A batch costs two of these statements whatever it holds: `lock_offsets` first (it begins the
    transaction), `finish_batch` last (offsets, outbox, and the clean-up of earlier batches).
    """

    def __init__(self, *, schema: str, group: str) -> None:
        self._schema = schema
        self._group = group
        # Built once: the two statements every batch runs.
        self._select_for_update_sql = text(
            f"""
            SELECT o.topic, o.partition, o.next_offset
            FROM "{self._schema}".consumer_offsets AS o
            JOIN unnest(CAST(:topics AS text[]), CAST(:partitions AS integer[]))
                AS k(topic, partition) ON o.topic = k.topic AND o.partition = k.partition
            WHERE o.consumer_group = :group
            ORDER BY o.topic, o.partition
            FOR UPDATE OF o
            """
        )
        self._finish_sql = f"""
        WITH advanced AS (
            UPDATE "{self._schema}".consumer_offsets AS o
            SET next_offset = n.next_offset, updated_at = now()
            FROM unnest($2::text[], $3::integer[], $4::bigint[])
                AS n(topic, partition, next_offset)
            WHERE o.consumer_group = $1 AND o.topic = n.topic
              AND o.partition = n.partition AND n.next_offset > o.next_offset
        ), cleared AS (
            DELETE FROM "{self._schema}".outbox WHERE batch_id = ANY($5::uuid[])
        )
        INSERT INTO "{self._schema}".outbox (batch_id, seq, topic, key, value,
            header_keys, header_values, source_topic, source_partition)
        SELECT $6::uuid, r.seq, r.topic, r.key, r.value,
            ($7::text[])[r.h + 1 : r.h + r.n], ($8::bytea[])[r.h + 1 : r.h + r.n],
            r.source_topic, r.source_partition
        FROM unnest($9::integer[], $10::text[], $11::bytea[], $12::bytea[],
                    $13::integer[], $14::integer[], $15::text[], $16::integer[])
            AS r(seq, topic, key, value, h, n, source_topic, source_partition)
        """

    async def lock_offsets(
        self, session: AsyncSession, positions: Iterable[Position]
    ) -> dict[Position, int]:
        """Next offset to apply per (topic, partition), row-locked until the transaction ends.

        The lock serialises two consumers that both believe they own a partition (a rebalance
        in progress): the second waits, then sees the first's offsets and skips what it applied.
        Rows are locked in (topic, partition) order, so two owners never deadlock. One statement
        once the rows exist (always, after a partition's first batch); a missing row is created
        first (`ON CONFLICT DO NOTHING`: a concurrent creator wins, we then lock its row).
        """
        wanted = sorted(set(positions))
        locked = await self._select_for_update(session, wanted)
        if len(locked) < len(wanted):
            await session.execute(
                text(
                    f"""
                    INSERT INTO "{self._schema}".consumer_offsets
                        (consumer_group, topic, partition, next_offset)
                    SELECT :group, k.topic, k.partition, 0
                    FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS integer[]))
                        AS k(topic, partition)
                    ORDER BY k.topic, k.partition
                    ON CONFLICT DO NOTHING
                    """
                ),
                {
                    "group": self._group,
                    "topics": [t for t, _ in wanted],
                    "partitions": [p for _, p in wanted],
                },
            )
            locked = await self._select_for_update(session, wanted)
        return locked

    async def _select_for_update(
        self, session: AsyncSession, positions: Sequence[Position]
    ) -> dict[Position, int]:
        rows = await session.execute(
            self._select_for_update_sql,
            {
                "group": self._group,
                "topics": [t for t, _ in positions],
                "partitions": [p for _, p in positions],
            },
        )
        return {(str(t), int(p)): int(offset) for t, p, offset in rows.all()}

    async def finish_batch(
        self,
        connection: asyncpg.Connection,
        *,
        next_offsets: dict[Position, int],
        records: Sequence[PendingRecord],
        acked_batches: Sequence[uuid.UUID],
    ) -> None:
        """One statement at the end of a batch's transaction: advance the stored offsets (never
        backwards), store `records` in the outbox, and delete the outbox rows of `acked_batches`
        (earlier batches whose records the broker acknowledged since: folded in here instead
        of a transaction of their own per batch).

        `connection` is the batch's own (`shared.db.driver_connection`). Every record of a call
        has the same `batch_id`. Headers keep their bytes and order: they travel flattened (all
        keys, all values) with each record's start and count, and are sliced back per row.
        """
        batch_id = records[0].batch_id if records else None
        header_keys: list[str] = []
        header_values: list[bytes] = []
        starts: list[int] = []
        counts: list[int] = []
        for record in records:
            starts.append(len(header_keys))
            counts.append(len(record.headers))
            for key, value in record.headers:
                header_keys.append(key)
                header_values.append(value)
        await connection.execute(
            self._finish_sql,
            self._group,
            [t for t, _ in next_offsets],
            [p for _, p in next_offsets],
            list(next_offsets.values()),
            list(acked_batches),
            batch_id,
            header_keys,
            header_values,
            [r.seq for r in records],
            [r.topic for r in records],
            [r.key for r in records],
            [r.value for r in records],
            starts,
            counts,
            [r.source_topic for r in records],
            [r.source_partition for r in records],
        )

    async def remove_batches(self, session: AsyncSession, batch_ids: Iterable[uuid.UUID]) -> None:
        """Delete the outbox rows of batches the broker acknowledged (when no next batch's
        `finish_batch` comes to do it: idle, revocation, shutdown)."""
        ids = sorted(set(batch_ids))
        if ids:
            await session.execute(
                text(f'DELETE FROM "{self._schema}".outbox WHERE batch_id = ANY(:ids)'),
                {"ids": ids},
            )

    async def leftover_outbox(
        self, session: AsyncSession, *, partitions: Iterable[tuple[str, int]]
    ) -> list[PendingRecord]:
        """Records a previous owner of these partitions stored but may not have produced."""
        pairs = sorted(set(partitions))
        if not pairs:
            return []
        rows = await session.execute(
            text(
                f"""
                SELECT batch_id, seq, topic, key, value, header_keys, header_values,
                       source_topic, source_partition
                FROM "{self._schema}".outbox
                WHERE (source_topic, source_partition) IN (
                    SELECT * FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS integer[])))
                ORDER BY created_at, batch_id, seq
                """
            ),
            {"topics": [t for t, _ in pairs], "partitions": [p for _, p in pairs]},
        )
        return [
            PendingRecord(
                batch_id=row.batch_id,
                seq=row.seq,
                topic=row.topic,
                key=row.key,
                value=row.value,
                headers=tuple(zip(row.header_keys, row.header_values, strict=True)),
                source_topic=row.source_topic,
                source_partition=row.source_partition,
            )
            for row in rows
        ]
