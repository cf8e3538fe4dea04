"""Bench section `runner`: what the consumer runner itself costs per record.

A trivial handler (no writes, one output per message, with a header, as a service's handler
returns) under the real `ConsumerRunner`, over records pre-loaded on the broker and consumed in
batches of 50 (the size the services see at 400-1,000 events/s). Every consumer pays this on top
of its own handler, so it is reported as CPU per record: this process (the runner: poll, decode,
store, produce, acks, commits) and the PostgreSQL server (the runner's statements). CPU time, not
a rate, so that other work on the machine moves the figure less; still, run on a quiet machine.

`python -m bench runner`; `BENCH_RUNNER_RECORDS` (default 20,000) sets the size.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import uvloop
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from bench.figures import Figure, median
from bench.infra import BenchInfra, produce_all
from shared.consumer import ConsumerRunner, Message, Output
from shared.contracts.base import Contract
from shared.db import create_engine, create_sessionmaker
from shared.kafka import aiokafka_connection
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import Topic

SECTION = "runner"
BATCH = 50
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


class Note(Contract):
    text: str
    n: int


SOURCE = Topic("bench.notes", Note, key="n", producer="bench")
OUTPUT = Topic("bench.notes.out", Note, key="n", producer="bench")


class CountingHandler:
    """Writes nothing; one output per message, as enrich and score emit."""

    def __init__(self) -> None:
        self.handled = 0

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        self.handled += len(messages)
        return [
            Output(OUTPUT, key=str(m.offset), value=m.value, headers=(("trace", b"t"),))
            for m in messages
        ]


def postgres_cpu_s(infra: BenchInfra) -> float:
    """CPU seconds of the whole PostgreSQL cluster so far: the postmaster, its live children and
    the children it reaped (from /proc)."""
    postmaster = int((infra.postgres.data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:  # utime, stime, cutime, cstime
            total += sum(int(f) for f in fields[11:15])
        elif ppid == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / tick


async def one_run(infra: BenchInfra, records: int) -> tuple[float, float, float]:
    """(runner CPU us per record, PostgreSQL CPU us per record, records/s) of one run."""
    url = await infra.fresh_database()
    prefix = await infra.fresh_topic_prefix()
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    admin = AIOKafkaAdminClient(**aiokafka_connection(kafka))
    await admin.start()
    names = [SOURCE.full_name(prefix), OUTPUT.full_name(prefix), SOURCE.dlq_name(prefix)]
    await admin.create_topics([NewTopic(n, num_partitions=4, replication_factor=1) for n in names])
    await admin.close()
    await produce_all(
        kafka, SOURCE, [(str(i), Note(text=f"note {i}", n=i)) for i in range(records)]
    )

    engine = create_engine(DatabaseSettings(url=SecretStr(url)), application_name="bench-runner")
    handler = CountingHandler()
    runner = ConsumerRunner(
        service="enrich",  # any schema holding the runner's tables
        subscriptions=[SOURCE],
        handler=handler,
        sessions=create_sessionmaker(engine),
        schema="enrich",
        kafka=kafka,
        consumer=ConsumerSettings(max_batch_records=BATCH),
    )
    cpu, pg_cpu, wall = time.process_time(), postgres_cpu_s(infra), time.perf_counter()
    task = asyncio.create_task(runner.run())
    try:
        while handler.handled < records:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    finally:
        runner.request_stop()
        await task  # drains: outputs acknowledged, outbox cleared, offsets committed
    cpu, pg_cpu = time.process_time() - cpu, postgres_cpu_s(infra) - pg_cpu
    wall = time.perf_counter() - wall
    await engine.dispose()
    return cpu / records * 1e6, pg_cpu / records * 1e6, records / wall


async def run(infra: BenchInfra) -> list[Figure]:
    records = int(os.environ.get("BENCH_RUNNER_RECORDS", "20000"))
    # On uvloop, as the services run (shared.service), in a thread with its own event loop.
    runs = [await asyncio.to_thread(uvloop.run, one_run(infra, records)) for _ in range(RUNS)]
    for i, (cpu, pg, rate) in enumerate(runs):
        print(f"[bench] runner run {i}: {cpu:.0f} us/record, postgres {pg:.0f} us, {rate:.0f}/s")
    return [
        Figure(
            SECTION,
            f"runner CPU per record (batches of {BATCH})",
            median([r[0] for r in runs]),
            "us",
        ),
        Figure(SECTION, "PostgreSQL CPU per record", median([r[1] for r in runs]), "us"),
        Figure(
            SECTION,
            "records/s (one consumer, follows machine load)",
            median([r[2] for r in runs]),
            "records/s",
        ),
    ]
