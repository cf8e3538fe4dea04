"""The runner's own tables, in the consuming service's schema.

- `consumer_offsets`: the next offset to apply per (group, topic, partition), written in the same
  transaction as the handler's effects. A redelivered record below it is skipped: this is what
  makes a batch's effects happen exactly once, whatever Kafka redelivers.
- `outbox`: the records a committed batch must produce. Rows are deleted once the broker
  acknowledged them; rows left by a crash are produced when their partition is next assigned.

`create_runner_tables` is called by each service's first migration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PendingRecord:
    """A record committed to the outbox and not yet acknowledged by the broker."""

    batch_id: uuid.UUID
    seq: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    source_topic: str
    source_partition: int


class RunnerStore:
    """SQL for the runner's tables. Every method runs in the caller's transaction."""

    def __init__(self, *, schema: str, group: str) -> None:
        self._schema = schema
        self._group = group

    async def lock_offsets(
        self, session: AsyncSession, *, topic: str, partitions: Sequence[int]
    ) -> dict[int, int]:
        """Next offset to apply per partition, row-locked until the transaction ends.

        The lock serialises two consumers that both believe they own a partition (a rebalance
        in progress): the second waits, then sees the first's offsets and skips what it applied.
        """
        await session.execute(
            text(
                f"""
                INSERT INTO "{self._schema}".consumer_offsets
                    (consumer_group, topic, partition, next_offset)
                SELECT :group, :topic, p, 0 FROM unnest(CAST(:partitions AS integer[])) AS p
                ON CONFLICT DO NOTHING
                """
            ),
            {"group": self._group, "topic": topic, "partitions": list(partitions)},
        )
        rows = await session.execute(
            text(
                f"""
                SELECT partition, next_offset FROM "{self._schema}".consumer_offsets
                WHERE consumer_group = :group AND topic = :topic
                  AND partition = ANY(CAST(:partitions AS integer[]))
                ORDER BY partition
                FOR UPDATE
                """
            ),
            {"group": self._group, "topic": topic, "partitions": list(partitions)},
        )
        return {int(partition): int(offset) for partition, offset in rows.all()}

    async def advance_offsets(
        self, session: AsyncSession, *, topic: str, next_offsets: dict[int, int]
    ) -> None:
        await session.execute(
            text(
                f"""
                UPDATE "{self._schema}".consumer_offsets AS o
                SET next_offset = n.next_offset, updated_at = now()
                FROM unnest(CAST(:partitions AS integer[]), CAST(:offsets AS bigint[]))
                    AS n(partition, next_offset)
                WHERE o.consumer_group = :group AND o.topic = :topic
                  AND o.partition = n.partition AND n.next_offset > o.next_offset
                """
            ),
            {
                "group": self._group,
                "topic": topic,
                "partitions": list(next_offsets),
                "offsets": list(next_offsets.values()),
            },
        )

    async def add_to_outbox(self, session: AsyncSession, records: Sequence[PendingRecord]) -> None:
        if not records:
            return
        await session.execute(
            text(
                f"""
                INSERT INTO "{self._schema}".outbox (batch_id, seq, topic, key, value,
                    header_keys, header_values, source_topic, source_partition)
                VALUES (:batch_id, :seq, :topic, :key, :value,
                    :header_keys, :header_values, :source_topic, :source_partition)
                """
            ),
            [
                {
                    "batch_id": r.batch_id,
                    "seq": r.seq,
                    "topic": r.topic,
                    "key": r.key,
                    "value": r.value,
                    "header_keys": [k for k, _ in r.headers],
                    "header_values": [v for _, v in r.headers],
                    "source_topic": r.source_topic,
                    "source_partition": r.source_partition,
                }
                for r in records
            ],
        )

    async def remove_from_outbox(
        self, session: AsyncSession, records: Iterable[PendingRecord]
    ) -> None:
        batch_ids = sorted({r.batch_id for r in records})
        if batch_ids:
            await session.execute(
                text(f'DELETE FROM "{self._schema}".outbox WHERE batch_id = ANY(:ids)'),
                {"ids": batch_ids},
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
