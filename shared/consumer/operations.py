"""The operator commands the shell gives every consuming service for its consumer runner
(`python -m services.<name> reset-offsets | replay-dead-letters`; docs/architecture.md,
"Delivery semantics").

- `reset-offsets --topic T [--partition N] --to earliest|OFFSET` sets the next offset the
  service applies of T's partitions, in the broker's committed offsets of its consumer group
  (where its consumer fetches from) and then in its `consumer_offsets` table (what it skips
  below: one transaction). For a topic deleted and re-created (the runner stops on one:
  `StoredOffsetsAhead`), or to apply records again. The service must be stopped: the broker
  refuses an outside commit while the group has members, and the command then refuses before
  writing anything.
- `replay-dead-letters --topic T [--limit N]` produces the letters the service dead-lettered in
  `T.dlq` (once its handler is fixed) onto T again: the original key, value and headers, plus
  `leadflow.replayed_from` naming the letter. Its own consumer group on the DLQ
  (`<service group>-dlq-replay`) commits its position once the broker acknowledged the replayed
  records, so a second run replays only what was dead-lettered since. At-least-once: a run cut
  between the acknowledgement and the commit replays those letters again, and every consumer of
  T receives a replayed record as a new one; they dedupe by message id. Letters other services
  left in the same DLQ are passed over (each replays its own). A replayed record lands after the
  records produced since its original: per-key order with them is not restored.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.consumer.runner import DEAD_LETTER_HEADERS, DEAD_LETTER_SERVICE, consumer_group
from shared.consumer.store import RunnerStore
from shared.kafka import aiokafka_connection, create_producer
from shared.operator import OperatorCommand, OperatorError, Report, table
from shared.resources import Resources
from shared.settings import KafkaSettings, ServiceSettings
from shared.topics import Topic

REPLAYED_FROM = "leadflow.replayed_from"
"""The header a replayed record carries: its dead letter, `<dlq>[<partition>]@<offset>`."""


def runner_commands(
    *, service: str, schema: str, subscriptions: Sequence[Topic]
) -> list[OperatorCommand[Any]]:
    """`reset-offsets` and `replay-dead-letters` for a service consuming `subscriptions`."""
    commands = _RunnerCommands(service=service, schema=schema, subscriptions=subscriptions)
    return [
        OperatorCommand(
            name="reset-offsets",
            help="set where the consumer resumes on a topic (after it was deleted and "
            "re-created); stop the service first",
            arguments=commands.reset_arguments,
            run=commands.reset,
        ),
        OperatorCommand(
            name="replay-dead-letters",
            help="produce the service's dead letters of a topic onto it again (handler fixed)",
            arguments=commands.replay_arguments,
            run=commands.replay,
            needs_database=False,
        ),
    ]


def dead_letter_replay_group(kafka: KafkaSettings, service: str) -> str:
    """The consumer group `replay-dead-letters` keeps its position in (the service's Kafka user
    may read it: deploy/components/strimzi-kafka/users.yaml)."""
    return f"{consumer_group(kafka, service)}-dlq-replay"


@dataclass(frozen=True)
class OffsetReset:
    partition: int
    stored_before: int | None  # None: nothing was stored for it
    next_offset: int


async def reset_offsets(
    *,
    kafka: KafkaSettings,
    sessions: async_sessionmaker[AsyncSession],
    schema: str,
    group: str,
    topic: str,
    partition: int | None,
    to: int | None,
) -> list[OffsetReset]:
    """Set the next offset `group` applies of `topic` (its full name), of one partition or all,
    to `to` (None: each partition's earliest): in the broker's committed offsets, then in the
    `consumer_offsets` table of `schema`. Raises `OperatorError` for an unknown topic or
    partition, or while the group has members (nothing is written then)."""
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(kafka),
        group_id=group,
        client_id="leadflow-reset-offsets",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = _partitions_of(consumer, topic)
        if partition is not None:
            if partition not in partitions:
                raise OperatorError(f"{topic} has no partition {partition} (it has {partitions})")
            partitions = [partition]
        wanted = [TopicPartition(topic, p) for p in partitions]
        if to is None:
            targets = {
                tp.partition: o for tp, o in (await consumer.beginning_offsets(wanted)).items()
            }
        else:
            targets = dict.fromkeys(partitions, to)
        consumer.assign(wanted)
        try:
            # An outside commit: the broker refuses it while the group has members.
            await consumer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in targets.items()}
            )
        except CommitFailedError as exc:
            raise OperatorError(
                f"the consumer group {group} has live members (the service is running?): "
                "stop it, then reset its offsets"
            ) from exc
    finally:
        await consumer.stop()
    async with sessions() as session, session.begin():
        before = await RunnerStore(schema=schema, group=group).reset_offsets(
            session, topic=topic, next_offsets=targets
        )
    return [OffsetReset(p, before[p], targets[p]) for p in sorted(targets)]


@dataclass(frozen=True)
class Replay:
    replayed: int
    passed_over: int  # letters another service dead-lettered


async def replay_dead_letters(
    *,
    kafka: KafkaSettings,
    service: str,
    topic: Topic,
    limit: int | None,
    group: str | None = None,
    quiet_s: float = 3.0,
) -> Replay:
    """Replay `service`'s dead letters of `topic` not replayed yet, at most `limit` (see the
    module doc). Reads the DLQ until caught up: every partition at the high watermark its last
    fetch reported, or no record for `quiet_s`. `group` defaults to the service's own."""
    source = topic.full_name(kafka.topic_prefix)
    dlq = topic.dlq_name(kafka.topic_prefix)
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(kafka),
        group_id=group or dead_letter_replay_group(kafka, service),
        client_id=f"leadflow-{service}-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = create_producer(kafka, client_id=f"leadflow-{service}-replay")
    replayed = passed_over = 0
    await consumer.start()
    try:
        await producer.start()
        consumer.assign([TopicPartition(dlq, p) for p in _partitions_of(consumer, dlq)])
        last_record = time.monotonic()
        while limit is None or replayed < limit:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                if await _caught_up(consumer) or time.monotonic() - last_record > quiet_s:
                    break
                continue
            last_record = time.monotonic()
            done: dict[TopicPartition, int] = {}
            acks = []
            for tp, records in batch.items():
                for record in records:
                    if limit is not None and replayed >= limit:
                        break
                    done[tp] = record.offset + 1
                    headers = list(record.headers or ())
                    if (DEAD_LETTER_SERVICE, service.encode()) not in headers:
                        passed_over += 1
                        continue
                    kept = [
                        (key, value)
                        for key, value in headers
                        if key not in DEAD_LETTER_HEADERS and key != REPLAYED_FROM
                    ]
                    kept.append((REPLAYED_FROM, f"{dlq}[{tp.partition}]@{record.offset}".encode()))
                    acks.append(
                        await producer.send(
                            source, value=record.value, key=record.key, headers=kept
                        )
                    )
                    replayed += 1
            await asyncio.gather(*acks)  # acknowledged (acks=all) before the position moves
            if done:
                await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in done.items()})
    finally:
        await producer.stop()
        await consumer.stop()
    return Replay(replayed=replayed, passed_over=passed_over)


def _partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    # A started consumer without a subscription holds the metadata of every topic.
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise OperatorError(f"the broker has no topic {topic}")
    return sorted(partitions)


async def _caught_up(consumer: AIOKafkaConsumer) -> bool:
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


@dataclass(frozen=True)
class _RunnerCommands:
    service: str
    schema: str
    subscriptions: Sequence[Topic]

    def _topic(self, kafka: KafkaSettings, name: str) -> Topic:
        for topic in self.subscriptions:
            if name in (topic.name, topic.full_name(kafka.topic_prefix)):
                return topic
        consumed = ", ".join(topic.name for topic in self.subscriptions)
        raise OperatorError(f"{self.service} does not consume {name} (it consumes {consumed})")

    def reset_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--topic", required=True, help="a topic the service consumes")
        parser.add_argument("--partition", type=int, help="one partition (default: all)")
        parser.add_argument(
            "--to",
            required=True,
            type=_reset_target,
            metavar="earliest|OFFSET",
            help="the next offset to apply: each partition's earliest, or this offset",
        )

    async def reset(
        self, resources: Resources[ServiceSettings], args: argparse.Namespace
    ) -> Report:
        kafka = resources.settings.kafka
        topic = self._topic(kafka, args.topic).full_name(kafka.topic_prefix)
        group = consumer_group(kafka, self.service)
        resets = await reset_offsets(
            kafka=kafka,
            sessions=resources.database(),
            schema=self.schema,
            group=group,
            topic=topic,
            partition=args.partition,
            to=None if args.to == "earliest" else args.to,
        )
        rows = [(r.partition, r.stored_before, r.next_offset) for r in resets]
        return Report(
            text=f"{group} on {topic}: offsets reset\n"
            + table(("partition", "stored before", "next offset"), rows),
            data={
                "group": group,
                "topic": topic,
                "partitions": [
                    {"partition": p, "stored_before": b, "next_offset": n} for p, b, n in rows
                ],
            },
        )

    def replay_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--topic", required=True, help="the topic whose dead letters to replay")
        parser.add_argument("--limit", type=int, help="replay at most this many (default: all)")

    async def replay(
        self, resources: Resources[ServiceSettings], args: argparse.Namespace
    ) -> Report:
        kafka = resources.settings.kafka
        topic = self._topic(kafka, args.topic)
        outcome = await replay_dead_letters(
            kafka=kafka, service=self.service, topic=topic, limit=args.limit
        )
        source = topic.full_name(kafka.topic_prefix)
        return Report(
            text=f"replayed {outcome.replayed} dead letters of {self.service} from "
            f"{topic.dlq_name(kafka.topic_prefix)} onto {source}"
            + (
                f" ({outcome.passed_over} of other services passed over)"
                if outcome.passed_over
                else ""
            ),
            data={
                "topic": source,
                "replayed": outcome.replayed,
                "passed_over": outcome.passed_over,
            },
        )


def _reset_target(value: str) -> str | int:
    if value == "earliest":
        return value
    try:
        offset = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("expected `earliest` or an offset") from None
    if offset < 0:
        raise argparse.ArgumentTypeError("an offset is 0 or more")
    return offset
