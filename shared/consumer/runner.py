"""The consumer runner: batch fetch -> decode -> handle + store -> produce -> commit.

Contract, per batch (see docs/architecture.md, "Delivery semantics"):
0. (Once per assignment.) Each assigned partition starts at the next offset stored in
   PostgreSQL, not at Kafka's committed offset: the database is the truth, and after a failover
   or a restore that lost transactions Kafka's offset is ahead of it (`_position`).
1. Fetch up to `max_batch_records` records from the assigned partitions.
2. Decode and validate each value against its topic's model. Undecodable or invalid values
   become dead letters (`<topic>.dlq`, original bytes, reason in headers).
3. In ONE database transaction: lock the partitions' stored offsets, skip records already applied
   (a redelivery), call the service's handler, store its outputs and the dead letters in the
   outbox, advance the stored offsets, and delete the outbox rows of the earlier batches whose
   records the broker has acknowledged since (step 4). Each outbox row is tagged with the
   partition of the record that produced it (`Output.source` gives the rule). A partition whose
   records all lie below its stored offset and that ends below it on the broker (its topic was
   deleted and re-created) stops the runner with `StoredOffsetsAhead` instead of skipping them,
   until an operator runs `reset-offsets` (`shared.consumer.operations`). A handler's
   `InvalidMessage` dead-letters that record and the batch is handled again without it; an
   unexpected handler error re-runs the batch one record at a time, so only the record that
   fails alone is dead-lettered (`replay-dead-letters` produces it again once fixed).
4. Send the outbox records. Their acknowledgements (acks=all) are awaited once the NEXT batch
   is stored (or when a poll comes back empty, before leftovers are produced, on revocation and
   at shutdown), so the broker's round trip overlaps the next batch's work instead of adding
   to every batch's time. Order per output partition holds: the producer keeps one request in
   flight per partition and retries it before the next, and a batch whose acknowledgement
   fails is sent again, whole, before the next batch's records are sent. The acknowledged
   batch's outbox rows are deleted by the next batch's transaction (step 3), or, when no batch
   follows, by a transaction of their own.
5. Commit a batch's Kafka offsets only once its outputs are acknowledged (throttled; forced on
   partition revocation and shutdown).

Effects are therefore exactly-once (offsets stored with them), outputs at-least-once:
- a crash between 3 and 4 (stored, not produced) re-produces them when the partition is next
  assigned (the outbox is read for the partitions a runner is given, before it consumes them);
  with step 4 overlapped, that can be the last two batches' outputs. A batch's rows go to the
  new owners of their own partitions, each deleting only the rows it produced, so a
  reassignment that splits the batch's partitions keeps each key's order;
- a crash after 4 (acknowledged) but before the rows' deletion commits re-produces them too,
  exactly as a crash between the acknowledgement and a delete of its own would: the window is
  longer (until the next batch's commit or the next empty poll), the outcome the same.
Consumers downstream dedupe by message id / decision id. A runner that is given partitions
deletes its own acknowledged rows before it looks for leftovers, so it never re-produces them.
Transient failures (database, including a statement or lock timeout, a deadlock and a
serialization failure; broker) retry the failing step with exponential backoff and never
commit past it; one that lasts `retry_give_up_after_s` ends the process with an error. A stop
request (SIGTERM) lets the batch in flight finish and commits.

Cost per batch, whatever its size: on the runner's own held database connection (no pool
checkout and ping per transaction), BEGIN, one statement to lock the offsets, the handler's
statements, one statement for offsets + outbox + deletions, COMMIT.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from shared.codec import UndecodableMessage, decode, encode
from shared.consumer.failures import is_transient
from shared.consumer.messages import Handler, InvalidMessage, Message, Output
from shared.consumer.store import PendingRecord, Position, RunnerStore
from shared.db import fetchval
from shared.kafka import KeyHashPartitioner, create_consumer, create_producer
from shared.settings import ConsumerSettings, KafkaSettings
from shared.telemetry import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    DEAD_LETTERS,
    MESSAGES_IN,
    MESSAGES_OUT,
    RETRIES,
    REWOUND_RECORDS,
)
from shared.topics import Topic

log = logging.getLogger(__name__)

T = TypeVar("T")
Acks: TypeAlias = "list[asyncio.Future[Any]]"
RawRecord: TypeAlias = ConsumerRecord[bytes, bytes]  # topic, partition, offset, key, value, headers

COMMIT_INTERVAL_S = 1.0

# The headers a dead letter carries after the original record's own (`replay-dead-letters`
# strips them again).
DEAD_LETTER_ERROR = "leadflow.error"
DEAD_LETTER_SERVICE = "leadflow.service"
DEAD_LETTER_SOURCE_TOPIC = "leadflow.source_topic"
DEAD_LETTER_SOURCE_PARTITION = "leadflow.source_partition"
DEAD_LETTER_SOURCE_OFFSET = "leadflow.source_offset"
DEAD_LETTER_HEADERS = frozenset(
    {
        DEAD_LETTER_ERROR,
        DEAD_LETTER_SERVICE,
        DEAD_LETTER_SOURCE_TOPIC,
        DEAD_LETTER_SOURCE_PARTITION,
        DEAD_LETTER_SOURCE_OFFSET,
    }
)


def consumer_group(kafka: KafkaSettings, service: str) -> str:
    """The consumer group of a service's runner (its stored offsets are kept under this name)."""
    return f"{kafka.topic_prefix}leadflow-{service}"


class StoredOffsetsAhead(Exception):
    """A partition ends on the broker below the next offset stored for it: the topic was deleted
    and re-created (or lost records). Applying on would skip its records as applied; the runner
    stops instead, until an operator resets the stored offsets (`reset-offsets`)."""

    def __init__(
        self, *, service: str, topic: str, partition: int, stored: int, broker_end: int
    ) -> None:
        super().__init__(
            f"{topic}[{partition}] ends at offset {broker_end} on the broker, but the next "
            f"offset stored for it is {stored}: the topic was deleted and re-created (or lost "
            f"records), and its records below {stored} would be skipped as already applied. "
            f"Stop {service} and run `python -m services.{service} reset-offsets "
            f"--topic {topic} --partition {partition} --to earliest` (or `--to <offset>`), "
            "then start it again."
        )
        self.topic = topic
        self.partition = partition
        self.stored = stored
        self.broker_end = broker_end


class Stopping(Exception):
    """The runner was asked to stop while a step was waiting to be retried."""


@dataclass(frozen=True)
class _Sent:
    """A stored batch whose outputs are sent and whose acknowledgements are still awaited."""

    records: Sequence[PendingRecord]
    acks: Acks
    next_offsets: dict[TopicPartition, int]  # of the consumed batch, committed once acknowledged


class ConsumerRunner:
    """Runs one consumer-group member of a service until `stop` is set. See the module doc."""

    def __init__(
        self,
        *,
        service: str,
        subscriptions: Sequence[Topic],
        handler: Handler,
        sessions: async_sessionmaker[AsyncSession],
        schema: str,
        kafka: KafkaSettings,
        consumer: ConsumerSettings,
        group_id: str | None = None,
    ) -> None:
        self._service = service
        self._handler = handler
        self._sessions = sessions
        engine = sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("sessions must be bound to an engine (shared.db.create_sessionmaker)")
        self._engine = engine
        # The runner's own connection, held between batches (see `_transaction`).
        self._connection: AsyncConnection | None = None
        # Batches produced and acknowledged whose outbox rows are not deleted yet (oldest first).
        self._acked: list[uuid.UUID] = []
        # The last batch, sent and not yet known to be acknowledged (see `_settle`).
        self._sent: _Sent | None = None
        self._kafka = kafka
        self._settings = consumer
        prefix = kafka.topic_prefix
        self._topics = {topic.full_name(prefix): topic for topic in subscriptions}
        # The alerts' counters exist from the start, at 0: Prometheus's increase() sees a
        # counter grow only between two scrapes, so a series born at 1 would hide the first
        # dead letter (or rewind) of this process from them.
        for name in self._topics:
            DEAD_LETTERS.labels(service, name)
            REWOUND_RECORDS.labels(service, name)
        self._group = group_id or consumer_group(kafka, service)
        self._store = RunnerStore(schema=schema, group=self._group)
        self._partitioner = KeyHashPartitioner()  # the one `create_producer` gives its producer
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()  # held while a batch is in flight; revocation waits on it
        self._stop = asyncio.Event()
        self._abandoned = False
        self._uncommitted: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._assigned: set[TopicPartition] = set()
        self._outbox_to_recheck: set[TopicPartition] = set()
        # Assigned, paused, and not yet positioned at their stored offsets (`_position`).
        self._to_position: set[TopicPartition] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the runner to finish the batch in flight, commit, and return from `run`."""
        self._stop.set()

    def abandon(self) -> None:
        """Give up draining (the shell calls this when a drain outlasts
        `shutdown_drain_timeout_s`, then cancels `run`): the runner stops without settling or
        committing anything more. The batch in flight, and a batch sent but not known to be
        acknowledged, keep their Kafka offsets uncommitted: the partitions' next owner is
        given them again (and skips what was stored as applied, producing its outbox)."""
        self._abandoned = True
        self._stop.set()

    async def run(self) -> None:
        """Consume until `request_stop`. Raises if a transient failure outlasts the give-up time."""
        try:
            self._producer = await self._retrying("start producer", self._start_producer)
            self._consumer = consumer = await self._retrying("start consumer", self._start_consumer)
            while not self._stop.is_set():
                if self._to_position:
                    async with self._lock:
                        await self._retrying("position partitions", self._position)
                if self._outbox_to_recheck:
                    async with self._lock:
                        await self._produce_leftovers()
                batch = await consumer.getmany(
                    timeout_ms=self._settings.poll_timeout_ms,
                    max_records=self._settings.max_batch_records,
                )
                if batch:
                    async with self._lock:
                        await self._handle_batch(batch)
                    continue
                if self._sent is not None:
                    async with self._lock:
                        await self._settle()
                if self._acked:  # no next batch to fold their deletion into
                    async with self._lock:
                        await self._clear_acked()
                if self._uncommitted:
                    await self._commit(force=False)
        except Stopping:
            log.info("stopped while waiting to retry; the batch in flight will be redelivered")
        finally:
            await self._shutdown()

    async def _start_producer(self) -> AIOKafkaProducer:
        producer = create_producer(self._kafka, client_id=f"leadflow-{self._service}")
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _start_consumer(self) -> AIOKafkaConsumer:
        consumer = create_consumer(
            self._kafka,
            group_id=self._group,
            client_id=f"leadflow-{self._service}",
            max_batch_records=self._settings.max_batch_records,
        )
        try:
            await consumer.start()
            consumer.subscribe(list(self._topics), listener=_Rebalance(self))
        except BaseException:
            await consumer.stop()
            raise
        return consumer

    async def _shutdown(self) -> None:
        try:
            if self._consumer is not None:
                if not self._abandoned:
                    async with self._lock:
                        await self._settle_or_log()
                        await self._clear_acked_or_log()
                        await self._commit(force=True)
                # Leaves the group: partitions move on at once. Bounded: an abandoned drain is
                # often a broker that does not answer.
                async with asyncio.timeout(None if not self._abandoned else 5):
                    await self._consumer.stop()
            if self._producer is not None:
                async with asyncio.timeout(None if not self._abandoned else 5):
                    await self._producer.stop()  # flushes anything still buffered
        finally:
            if self._connection is not None:  # back to the pool, for the engine's dispose
                connection, self._connection = self._connection, None
                await connection.close()

    async def readiness(self) -> dict[str, bool]:
        """Checks for `/readyz`: broker client started, partitions assigned, database answering."""
        return {
            "broker": self._producer is not None and self._consumer is not None,
            "partitions_assigned": bool(self._assigned),
            "database": await self._database_answers(),
        }

    async def _database_answers(self) -> bool:
        try:
            async with asyncio.timeout(2), self._sessions() as session:
                await fetchval(session, "SELECT 1")
        except Exception:
            return False
        return True

    # -- one batch ---------------------------------------------------------------------------

    async def _handle_batch(self, batch: dict[TopicPartition, list[RawRecord]]) -> None:
        started = time.perf_counter()
        records = [record for tp_records in batch.values() for record in tp_records]
        decoded, dead = self._decode(records)

        async def store() -> list[PendingRecord]:
            try:
                return await self._store_batch(batch, decoded, dead)
            except Exception as exc:
                if is_transient(exc):
                    # The connection may have failed after the server committed: the retry then
                    # skips the records as applied, and their outputs wait in the outbox.
                    self._outbox_to_recheck |= self._assigned
                raise

        pending = await self._retrying("store batch", store)
        await self._settle()  # the previous batch's acknowledgements, awaited while this one ran
        acks = await self._retrying("send outputs", lambda: self._send(pending))
        self._sent = _Sent(
            records=pending,
            acks=acks,
            next_offsets={tp: tp_records[-1].offset + 1 for tp, tp_records in batch.items()},
        )
        for tp, tp_records in batch.items():
            MESSAGES_IN.labels(self._service, tp.topic).inc(len(tp_records))
            self._report_lag(tp, next_offset=tp_records[-1].offset + 1)
        BATCH_SIZE.labels(self._service).observe(len(records))
        BATCH_SECONDS.labels(self._service).observe(time.perf_counter() - started)

    async def _settle(self) -> None:
        """Await the last sent batch's acknowledgements (step 4), then count it acknowledged:
        its outbox rows are due for deletion and its Kafka offsets for commit (step 5).

        An acknowledgement that failed transiently sends the whole batch again and awaits it
        (the records acknowledged already are duplicated downstream: at-least-once), before any
        later batch is sent, so order per partition holds."""
        sent = self._sent
        if sent is None:
            return
        results = await asyncio.gather(*sent.acks, return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            if not isinstance(failure, Exception) or not is_transient(failure):
                raise failure
            log.warning("producing a batch's outputs failed (%s); sending it again", failure)
            await self._retrying("produce outputs", lambda: self._produce(sent.records))
        else:
            self._count_produced(sent.records)
        self._sent = None
        if sent.records:  # its outbox rows are deleted by the next batch's transaction
            self._acked.append(sent.records[0].batch_id)
        self._uncommitted.update(sent.next_offsets)
        await self._commit(force=False)

    async def _settle_or_log(self) -> None:
        """`_settle` where giving up partitions must go on whatever happens (revocation,
        shutdown): a batch left unacknowledged stays in the outbox for the next owner, and its
        Kafka offsets uncommitted (redelivered, then skipped as applied)."""
        try:
            await self._settle()
        except Exception:
            self._sent = None
            log.exception("could not settle the last batch; the outbox keeps its outputs")

    def _decode(
        self, records: Sequence[RawRecord]
    ) -> tuple[list[Message[BaseModel]], list[tuple[RawRecord, str]]]:
        decoded: list[Message[BaseModel]] = []
        dead: list[tuple[RawRecord, str]] = []
        for record in records:
            topic = self._topics[record.topic]
            try:
                value = decode(record.value, topic.model)
            except UndecodableMessage as exc:
                dead.append((record, str(exc)))
                continue
            decoded.append(
                Message(
                    topic=topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=value,
                    headers=tuple(record.headers or ()),
                )
            )
        return decoded, dead

    async def _store_batch(
        self,
        batch: dict[TopicPartition, list[RawRecord]],
        decoded: list[Message[BaseModel]],
        dead: list[tuple[RawRecord, str]],
    ) -> list[PendingRecord]:
        """Step 3 of the contract: handler effects, outbox and offsets in one transaction."""
        raw_by_position = {(r.topic, r.partition, r.offset): r for rs in batch.values() for r in rs}
        refused: dict[tuple[str, int, int], str] = {
            (r.topic, r.partition, r.offset): reason for r, reason in dead
        }
        prefix = self._kafka.topic_prefix
        positions = sorted((tp.topic, tp.partition) for tp in batch)
        next_offsets = {
            (tp.topic, tp.partition): records[-1].offset + 1 for tp, records in batch.items()
        }
        one_by_one = False
        while True:
            try:
                clearing = tuple(self._acked)
                async with self._transaction() as session:
                    next_to_apply = await self._store.lock_offsets(session, positions)
                    self._refuse_rewound_partitions(batch, next_to_apply)
                    fresh = [
                        m
                        for m in decoded
                        if m.offset >= next_to_apply[_position(m, prefix)[:2]]
                        and _position(m, prefix) not in refused
                    ]
                    outputs: Sequence[Output] = []
                    if fresh and one_by_one:
                        outputs = await self._handle_one_by_one(fresh, session, refused)
                    elif fresh:
                        outputs = await self._handler(fresh, session)
                    batch_id = uuid.uuid4()
                    pending = self._to_records(batch_id, outputs, fresh)
                    pending += self._dead_letters(
                        batch_id,
                        start_seq=len(pending),
                        letters=[
                            (raw_by_position[position], reason)
                            for position, reason in refused.items()
                            if position[2] >= next_to_apply[(position[0], position[1])]
                        ],
                    )
                    await self._store.finish_batch(
                        session,
                        next_offsets=next_offsets,
                        records=pending,
                        acked_batches=clearing,
                    )
                del self._acked[: len(clearing)]  # deleted with this batch's commit
                return pending
            except InvalidMessage as exc:
                refused[_position(exc.message, self._kafka.topic_prefix)] = exc.reason
            except StoredOffsetsAhead:
                raise
            except Exception as exc:
                if is_transient(exc) or one_by_one:
                    raise
                log.warning("handler failed on a batch of %d; retrying one by one", len(decoded))
                one_by_one = True

    def _refuse_rewound_partitions(
        self, batch: dict[TopicPartition, list[RawRecord]], next_to_apply: dict[Position, int]
    ) -> None:
        """Stop rather than skip a re-created topic's records (`StoredOffsetsAhead`).

        A redelivery lies below the stored offset too, but its partition reaches at least that
        far; a partition whose end (the high watermark the fetch reported, or past the records
        in hand, whichever is further) is below the stored offset lost the records we stored
        as applied. Checked only when a partition's records all lie below the stored offset;
        costs no request. Not caught: a re-created topic already refilled past the old offset."""
        assert self._consumer is not None
        for tp, records in batch.items():
            stored = next_to_apply[(tp.topic, tp.partition)]
            end = records[-1].offset + 1
            if end >= stored:
                continue
            end = max(end, self._consumer.highwater(tp) or 0)
            if end < stored:
                error = StoredOffsetsAhead(
                    service=self._service,
                    topic=tp.topic,
                    partition=tp.partition,
                    stored=stored,
                    broker_end=end,
                )
                log.error("%s", error)
                raise error

    async def _handle_one_by_one(
        self,
        messages: Sequence[Message[BaseModel]],
        session: AsyncSession,
        refused: dict[tuple[str, int, int], str],
    ) -> list[Output]:
        """Find the record a handler cannot take: each in a savepoint; a failure alone is poison."""
        outputs: list[Output] = []
        for message in messages:
            try:
                async with session.begin_nested():
                    outputs += await self._handler([message], session)
            except InvalidMessage as exc:
                refused[_position(message, self._kafka.topic_prefix)] = exc.reason
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("handler failed on %s; dead-lettering it", _position(message, ""))
                refused[_position(message, self._kafka.topic_prefix)] = (
                    f"handler error: {type(exc).__name__}: {exc}"
                )
        return outputs

    def _to_records(
        self, batch_id: uuid.UUID, outputs: Sequence[Output], fresh: Sequence[Message[BaseModel]]
    ) -> list[PendingRecord]:
        """Outbox rows, each tagged with the partition of the message that produced it (the rule
        is `Output.source`'s), so that partition's next owner finishes producing it."""
        prefix = self._kafka.topic_prefix
        by_key = {message.key: message for message in fresh}  # the last message with each key
        first = fresh[0] if fresh else None
        records = []
        for seq, output in enumerate(outputs):
            key = output.key.encode()
            source = output.source or by_key.get(key) or first
            records.append(
                PendingRecord(
                    batch_id=batch_id,
                    seq=seq,
                    topic=output.topic.full_name(prefix),
                    key=key,
                    value=None if output.value is None else encode(output.value),
                    headers=output.headers,
                    source_topic=source.topic.full_name(prefix) if source else "",
                    source_partition=source.partition if source else -1,
                )
            )
        return records

    def _dead_letters(
        self, batch_id: uuid.UUID, *, start_seq: int, letters: Sequence[tuple[RawRecord, str]]
    ) -> list[PendingRecord]:
        records = []
        for seq, (raw, reason) in enumerate(letters, start=start_seq):
            topic = self._topics[raw.topic]
            log.warning(
                "dead-lettering %s[%d]@%d: %s", raw.topic, raw.partition, raw.offset, reason
            )
            headers = (
                *tuple(raw.headers or ()),
                (DEAD_LETTER_ERROR, reason.encode()[:4000]),
                (DEAD_LETTER_SERVICE, self._service.encode()),
                (DEAD_LETTER_SOURCE_TOPIC, raw.topic.encode()),
                (DEAD_LETTER_SOURCE_PARTITION, str(raw.partition).encode()),
                (DEAD_LETTER_SOURCE_OFFSET, str(raw.offset).encode()),
            )
            records.append(
                PendingRecord(
                    batch_id=batch_id,
                    seq=seq,
                    topic=topic.dlq_name(self._kafka.topic_prefix),
                    key=raw.key,
                    value=raw.value,
                    headers=headers,
                    source_topic=raw.topic,
                    source_partition=raw.partition,
                )
            )
        return records

    async def _produce(self, pending: Sequence[PendingRecord]) -> None:
        """Send every record, then wait for every acknowledgement (acks=all)."""
        await asyncio.gather(*await self._send(pending))
        self._count_produced(pending)

    async def _send(self, pending: Sequence[PendingRecord]) -> Acks:
        """Hand every record to the producer, in outbox order; return the acknowledgements."""
        producer = self._producer
        assert producer is not None
        # Grouped into one producer batch per partition (in outbox order), rather than one
        # `send` each: a record's partition lookup, future and accumulator entry cost more than
        # the runner's whole database work (measured). Partitions are chosen as `send` would
        # (the producer's `KeyHashPartitioner`, the Java client's murmur2 of the key).
        by_partition: dict[tuple[str, int], list[PendingRecord]] = defaultdict(list)
        partitions_of: dict[str, list[int]] = {}
        for record in pending:
            partitions = partitions_of.get(record.topic)
            if partitions is None:
                partitions = partitions_of[record.topic] = sorted(
                    await producer.partitions_for(record.topic)
                )
            partition = self._partitioner(record.key, partitions, partitions)
            by_partition[(record.topic, partition)].append(record)
        acks: Acks = []
        for (topic, partition), records in by_partition.items():
            batch = producer.create_batch()
            for record in records:
                if not _append(batch, record):  # full: send it, start the next
                    acks.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if not _append(batch, record):
                        raise ValueError(f"a record for {topic} is larger than a producer batch")
            acks.append(await producer.send_batch(batch, topic, partition=partition))
        return acks

    def _count_produced(self, pending: Sequence[PendingRecord]) -> None:
        produced: dict[str, int] = defaultdict(int)
        dead: dict[str, int] = defaultdict(int)
        for record in pending:
            if record.topic.endswith(".dlq"):
                dead[record.source_topic] += 1
            else:
                produced[record.topic] += 1
        for topic, n in produced.items():
            MESSAGES_OUT.labels(self._service, topic).inc(n)
        for topic, n in dead.items():
            DEAD_LETTERS.labels(self._service, topic).inc(n)

    async def _produce_leftovers(self) -> None:
        """Produce what a crashed or revoked owner of our new partitions stored but did not send."""
        await self._settle()  # our own last batch is acknowledged, so not taken for a leftover
        partitions = {(tp.topic, tp.partition) for tp in self._outbox_to_recheck}

        async def load() -> list[PendingRecord]:
            clearing = tuple(self._acked)
            async with self._transaction() as session:
                # Our own acknowledged batches are not leftovers: delete them first.
                await self._store.remove_batches(session, clearing)
                leftovers = await self._store.leftover_outbox(session, partitions=partitions)
            del self._acked[: len(clearing)]
            return leftovers

        async def remove() -> None:
            async with self._transaction() as session:
                await self._store.remove_records(session, leftovers)

        leftovers = await self._retrying("load outbox", load)
        if leftovers:
            log.info("producing %d records left in the outbox by a previous owner", len(leftovers))
            await self._retrying("produce outbox", lambda: self._produce(leftovers))
            # These rows only, not their whole batches: a batch's other rows belong to the
            # partitions another consumer may have been given, and are its to produce.
            await self._retrying("clear outbox", remove)
        self._outbox_to_recheck.clear()

    async def _clear_acked(self) -> None:
        """Delete the outbox rows of acknowledged batches in a transaction of their own, for when
        no next batch comes to fold it into. One attempt: on a transient failure they stay listed
        for the next batch or idle poll (and a crash meanwhile re-produces them: at-least-once)."""
        clearing = tuple(self._acked)
        if not clearing:
            return
        try:
            async with self._transaction() as session:
                await self._store.remove_batches(session, clearing)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not clear the outbox (%s: %s); will retry", type(exc).__name__, exc)
            return
        del self._acked[: len(clearing)]

    async def _clear_acked_or_log(self) -> None:
        """`_clear_acked` where giving up partitions must go on whatever happens (revocation,
        shutdown): rows left behind are produced again by the next owner (at-least-once)."""
        try:
            await self._clear_acked()
        except Exception:
            log.exception("could not clear the outbox; its acknowledged rows will be re-produced")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction (a session committed on normal exit) on the runner's own connection.

        The connection is held between transactions rather than checked out of the pool for each:
        a checkout pings the server first (`pool_pre_ping`: three round trips), which cost more
        than the runner's own statements. A connection that fails transiently (the server
        restarted, the network broke) or is interrupted is thrown away, so the retry runs on a
        fresh one from the pool (pinged then); other failures (a handler's error, an invalid
        message) leave it rolled back and usable.
        """
        if self._connection is None:
            self._connection = await self._engine.connect()
        try:
            async with self._sessions(bind=self._connection) as session, session.begin():
                yield session
        except BaseException as exc:
            if not isinstance(exc, Exception) or is_transient(exc):
                await self._drop_connection()
            raise

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await connection.invalidate()  # not returned to the pool: the server may be gone
            await connection.close()
        except Exception as exc:
            log.debug("discarding a broken database connection: %s", exc)

    async def _commit(self, *, force: bool) -> None:
        """Commit consumed offsets to Kafka. The database holds the truth, so a failure only
        means some records will be redelivered and skipped; it is logged, not fatal."""
        if not self._uncommitted or self._consumer is None:
            return
        if not force and time.monotonic() - self._last_commit < COMMIT_INTERVAL_S:
            return
        offsets = {
            tp: OffsetAndMetadata(offset, "")
            for tp, offset in self._uncommitted.items()
            if tp in self._assigned
        }
        try:
            if offsets:
                await self._consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed (records will be redelivered and skipped): %s", exc)
        self._uncommitted.clear()
        self._last_commit = time.monotonic()

    def _report_lag(self, tp: TopicPartition, *, next_offset: int) -> None:
        assert self._consumer is not None
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            CONSUMER_LAG.labels(self._service, tp.topic, str(tp.partition)).set(
                max(highwater - next_offset, 0)
            )

    # -- retries -----------------------------------------------------------------------------

    async def _retrying(self, step: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run `action` until it succeeds, backing off on transient failures.

        Non-transient exceptions propagate at once. Gives up (re-raises) after
        `retry_give_up_after_s` of continuous failure; raises `Stopping` if a stop is requested
        while waiting.
        """
        backoff = self._settings.retry_initial_backoff_s
        first_failure: float | None = None
        while True:
            try:
                return await action()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                first_failure = first_failure or now
                if now - first_failure > self._settings.retry_give_up_after_s:
                    log.error("%s: still failing after %.0fs; giving up", step, now - first_failure)
                    raise
                RETRIES.labels(self._service, type(exc).__name__).inc()
                log.warning(
                    "%s failed (%s: %s); retrying in %.1fs", step, type(exc).__name__, exc, backoff
                )
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=backoff)
            except TimeoutError:
                pass
            else:
                raise Stopping
            backoff = min(backoff * 2, self._settings.retry_max_backoff_s)

    # -- rebalances ----------------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # let the batch in flight finish and commit
            await self._settle_or_log()
            await self._clear_acked_or_log()
            await self._commit(force=True)
            self._assigned -= set(revoked)
            self._to_position -= set(revoked)
            for tp in revoked:
                self._uncommitted.pop(tp, None)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Called before the consumer can fetch anything of the new partitions (it has not
        looked up their committed offsets yet): they stay paused until `_position` has put them
        where PostgreSQL says, so no record is taken from Kafka's committed offset first."""
        self._assigned = set(assigned)
        self._outbox_to_recheck |= set(assigned)
        self._to_position = set(assigned)
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))

    async def _position(self) -> None:
        """Start each newly assigned partition at the next offset PostgreSQL stored for it, the
        truth the batches' effects were committed with; Kafka's committed offsets only follow.

        They differ when the database lost its last transactions (a failover to a standby that
        had not received them, a restore from a backup): Kafka's offset is then ahead, and
        starting from it would skip records whose effects are gone. The consumer goes back to
        the stored offset instead, the records are applied again, once (their effects are not
        stored), and `leadflow_consumer_rewound_records_total` counts them. A partition with no
        stored offset starts at the beginning of the log, whatever Kafka committed. Kafka's
        committed offset is then set to the stored one, so lag (and KEDA, which scales on it)
        reads the truth. A stored offset past the log's end (the topic was re-created) makes the
        consumer start from the beginning, and the first batch stops the runner with
        `StoredOffsetsAhead` as before."""
        consumer = self._consumer
        assert consumer is not None
        partitions = self._to_position & consumer.assignment()
        async with self._transaction() as session:
            stored = await self._store.stored_offsets(
                session, [(tp.topic, tp.partition) for tp in partitions]
            )
        ordered = sorted(partitions)
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in ordered))
        for tp, kafka_offset in zip(ordered, committed, strict=True):
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                consumer.seek(tp, 0)  # before the log's start: the broker resets it to there
                if kafka_offset:
                    log.warning(
                        "%s[%d]: nothing stored in PostgreSQL but Kafka committed %d:"
                        " applying the partition from its start",
                        tp.topic,
                        tp.partition,
                        kafka_offset,
                    )
                continue
            consumer.seek(tp, offset)
            if kafka_offset is not None and kafka_offset > offset:
                log.warning(
                    "%s[%d]: Kafka committed %d, PostgreSQL stored %d: applying the %d records"
                    " in between again (the database lost the transactions that applied them)",
                    tp.topic,
                    tp.partition,
                    kafka_offset,
                    offset,
                    kafka_offset - offset,
                )
                REWOUND_RECORDS.labels(self._service, tp.topic).inc(kafka_offset - offset)
            if kafka_offset != offset:
                self._uncommitted[tp] = offset
        consumer.resume(*partitions)
        self._to_position -= partitions
        await self._commit(force=True)


def _append(batch: BatchBuilder, record: PendingRecord) -> bool:
    return (
        batch.append(
            timestamp=None, key=record.key, value=record.value, headers=list(record.headers)
        )
        is not None
    )


def _position(message: Message[Any], prefix: str) -> tuple[str, int, int]:
    return (message.topic.full_name(prefix), message.partition, message.offset)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._runner.on_assigned(assigned)
