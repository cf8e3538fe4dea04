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

from alembic import op
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import execute, fetch


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
    """SQL for the runner's tables, by `shared.db`'s convention: every method takes the batch's
    session and runs in its transaction.

    A batch costs two of these statements whatever it holds: `lock_offsets` first (it begins the
    transaction), `finish_batch` last (offsets, outbox, and the clean-up of earlier batches).
    """

    def __init__(self, *, schema: str, group: str) -> None:
        self._schema = schema
        self._group = group
        # Built once: the two statements every batch runs.
        self._lock_offsets_sql = f"""
            SELECT stored.topic, stored.partition, stored.next_offset
              FROM "{self._schema}".consumer_offsets AS stored
              JOIN unnest($2::text[], $3::integer[]) AS wanted(topic, partition)
                ON stored.topic = wanted.topic AND stored.partition = wanted.partition
             WHERE stored.consumer_group = $1
             ORDER BY stored.topic, stored.partition
               FOR UPDATE OF stored
        """
        self._finish_sql = f"""
        WITH advanced AS (
            UPDATE "{self._schema}".consumer_offsets AS stored
            SET next_offset = consumed.next_offset, updated_at = now()
            FROM unnest($2::text[], $3::integer[], $4::bigint[])
                AS consumed(topic, partition, next_offset)
            WHERE stored.consumer_group = $1 AND stored.topic = consumed.topic
              AND stored.partition = consumed.partition
              AND consumed.next_offset > stored.next_offset
        ), cleared AS (
            DELETE FROM "{self._schema}".outbox WHERE batch_id = ANY($5::uuid[])
        )
        INSERT INTO "{self._schema}".outbox (batch_id, seq, topic, key, value,
            header_keys, header_values, source_topic, source_partition)
        SELECT $6::uuid, record.seq, record.topic, record.key, record.value,
            ($7::text[])[record.first_header + 1 : record.first_header + record.header_count],
            ($8::bytea[])[record.first_header + 1 : record.first_header + record.header_count],
            record.source_topic, record.source_partition
        FROM unnest($9::integer[], $10::text[], $11::bytea[], $12::bytea[],
                    $13::integer[], $14::integer[], $15::text[], $16::integer[])
            AS record(seq, topic, key, value, first_header, header_count, source_topic,
                      source_partition)
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
        topics = [topic for topic, _ in wanted]
        partitions = [partition for _, partition in wanted]
        locked = await self._lock_existing_offsets(session, topics, partitions)
        if len(locked) < len(wanted):
            await execute(
                session,
                f"""
                INSERT INTO "{self._schema}".consumer_offsets
                    (consumer_group, topic, partition, next_offset)
                SELECT $1, wanted.topic, wanted.partition, 0
                FROM unnest($2::text[], $3::integer[]) AS wanted(topic, partition)
                ORDER BY wanted.topic, wanted.partition
                ON CONFLICT DO NOTHING
                """,
                self._group,
                topics,
                partitions,
            )
            locked = await self._lock_existing_offsets(session, topics, partitions)
        return locked

    async def _lock_existing_offsets(
        self, session: AsyncSession, topics: list[str], partitions: list[int]
    ) -> dict[Position, int]:
        rows = await fetch(session, self._lock_offsets_sql, self._group, topics, partitions)
        return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}

    async def finish_batch(
        self,
        session: AsyncSession,
        *,
        next_offsets: dict[Position, int],
        records: Sequence[PendingRecord],
        acked_batches: Sequence[uuid.UUID],
    ) -> None:
        """One statement at the end of a batch's transaction: advance the stored offsets (never
        backwards), store `records` in the outbox, and delete the outbox rows of `acked_batches`
        (earlier batches whose records the broker acknowledged since: folded in here instead
        of a transaction of their own per batch).

        Every record of a call has the same `batch_id`. Headers keep their bytes and order: they
        travel flattened (all keys, all values) with each record's first header and count, and
        are sliced back per row.
        """
        batch_id = records[0].batch_id if records else None
        header_keys: list[str] = []
        header_values: list[bytes] = []
        first_headers: list[int] = []
        header_counts: list[int] = []
        for record in records:
            first_headers.append(len(header_keys))
            header_counts.append(len(record.headers))
            for key, value in record.headers:
                header_keys.append(key)
                header_values.append(value)
        await execute(
            session,
            self._finish_sql,
            self._group,
            [topic for topic, _ in next_offsets],
            [partition for _, partition in next_offsets],
            list(next_offsets.values()),
            list(acked_batches),
            batch_id,
            header_keys,
            header_values,
            [record.seq for record in records],
            [record.topic for record in records],
            [record.key for record in records],
            [record.value for record in records],
            first_headers,
            header_counts,
            [record.source_topic for record in records],
            [record.source_partition for record in records],
        )

    async def remove_batches(self, session: AsyncSession, batch_ids: Iterable[uuid.UUID]) -> None:
        """Delete the outbox rows of batches the broker acknowledged (when no next batch's
        `finish_batch` comes to do it: idle, revocation, shutdown)."""
        ids = sorted(set(batch_ids))
        if ids:
            await execute(
                session,
                f'DELETE FROM "{self._schema}".outbox WHERE batch_id = ANY($1::uuid[])',
                ids,
            )

    async def remove_records(self, session: AsyncSession, records: Sequence[PendingRecord]) -> None:
        """Delete these outbox rows (leftovers a new owner produced: its partitions' rows of
        their batches, whose other rows may be another owner's to produce)."""
        if records:
            await execute(
                session,
                f"""
                DELETE FROM "{self._schema}".outbox
                 WHERE (batch_id, seq) IN (SELECT * FROM unnest($1::uuid[], $2::integer[]))
                """,
                [record.batch_id for record in records],
                [record.seq for record in records],
            )

    async def stored_offsets(
        self, session: AsyncSession, positions: Iterable[Position]
    ) -> dict[Position, int]:
        """Next offset to apply per (topic, partition), where one is stored (no lock: read when
        partitions are assigned, to position the consumer; batches lock them again)."""
        wanted = sorted(set(positions))
        rows = await fetch(
            session,
            f"""
            SELECT stored.topic, stored.partition, stored.next_offset
              FROM "{self._schema}".consumer_offsets AS stored
              JOIN unnest($2::text[], $3::integer[]) AS wanted(topic, partition)
                ON stored.topic = wanted.topic AND stored.partition = wanted.partition
             WHERE stored.consumer_group = $1
            """,
            self._group,
            [topic for topic, _ in wanted],
            [partition for _, partition in wanted],
        )
        return {(row["topic"], row["partition"]): row["next_offset"] for row in rows}

    async def reset_offsets(
        self, session: AsyncSession, *, topic: str, next_offsets: dict[int, int]
    ) -> dict[int, int | None]:
        """Set the next offset to apply of these partitions of `topic`, backwards too (an
        operator's `reset-offsets`, with the service stopped); returns what each stored before
        (None: nothing yet). The rows are locked first, as a batch locks them, so a runner still
        running waits for this transaction and then applies from the new offsets."""
        partitions = sorted(next_offsets)
        rows = await fetch(
            session,
            f"""
            SELECT partition, next_offset FROM "{self._schema}".consumer_offsets
             WHERE consumer_group = $1 AND topic = $2 AND partition = ANY($3::integer[])
             ORDER BY partition
               FOR UPDATE
            """,
            self._group,
            topic,
            partitions,
        )
        before: dict[int, int | None] = dict.fromkeys(partitions)
        before.update({row["partition"]: row["next_offset"] for row in rows})
        await execute(
            session,
            f"""
            INSERT INTO "{self._schema}".consumer_offsets
                (consumer_group, topic, partition, next_offset)
            SELECT $1, $2, reset.partition, reset.next_offset
              FROM unnest($3::integer[], $4::bigint[]) AS reset(partition, next_offset)
            ON CONFLICT (consumer_group, topic, partition)
            DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()
            """,
            self._group,
            topic,
            partitions,
            [next_offsets[partition] for partition in partitions],
        )
        return before

    async def leftover_outbox(
        self, session: AsyncSession, *, partitions: Iterable[tuple[str, int]]
    ) -> list[PendingRecord]:
        """Records a previous owner of these partitions stored but may not have produced."""
        pairs = sorted(set(partitions))
        if not pairs:
            return []
        rows = await fetch(
            session,
            f"""
            SELECT batch_id, seq, topic, key, value, header_keys, header_values,
                   source_topic, source_partition
            FROM "{self._schema}".outbox
            WHERE (source_topic, source_partition) IN (
                SELECT * FROM unnest($1::text[], $2::integer[]))
            ORDER BY created_at, batch_id, seq
            """,
            [topic for topic, _ in pairs],
            [partition for _, partition in pairs],
        )
        return [
            PendingRecord(
                batch_id=row["batch_id"],
                seq=row["seq"],
                topic=row["topic"],
                key=row["key"],
                value=row["value"],
                headers=tuple(zip(row["header_keys"], row["header_values"], strict=True)),
                source_topic=row["source_topic"],
                source_partition=row["source_partition"],
            )
            for row in rows
        ]
