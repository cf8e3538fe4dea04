"""End to end: sustained throughput and speed-to-lead through the whole stack.

The four services run as their own processes (`python -m services.<name>`, as deployed) on the
bench broker and a fresh database; realistic website traffic (bench/traffic.py) is posted to
ingest as Segment `/v1/batch` calls. One stack serves every step, drained between steps:

1. Full load: ingest is driven as fast as it answers for a few seconds; each consuming
   service's rate is read from its consumed offsets in PostgreSQL. The slowest stage estimates
   what the pipeline can sustain.
2. Sustained: steady loads from that estimate upwards (x1, x1.5, x2, ...) for
   `BENCH_PIPELINE_S` seconds each (default 30); a load is sustained when the pipeline has
   applied everything within DRAIN_LIMIT_S of the load's end (no lasting lag growth). The
   highest sustained load is the figure; it is also printed as a share of the raw broker
   ceiling measured in the same run (aiokafka produce of same-size messages).
3. Speed-to-lead at 100 and 1,000 events/s and at half the sustained load: each `routing.sdr`
   decision's `speed_to_lead_ms`, from ingest receiving the event that made the lead an MQL to
   the router's decision (one clock: the same machine), after a 5 s warm-up; p50/p95/p99 are
   each the median over three windows of the load. At 1,000 events/s also where that time
   accumulates (bench/stages.py: ingest to events.enriched, ingest to leads.lifecycle) and each
   process's CPU.

Also: each service's peak RSS over the whole run.

Every step (the full load, each load of the ladder, each speed-to-lead load) starts the four
services afresh on new topics, with the same database and the same stream of visitors. The
development broker's fetch cost grows with everything a topic holds (its memory storage lists a
partition's stored batches on each fetch: one consumer of 1,000 records/s took Tansu from 14% to
52% of a core in 60 s here), which Kafka's offset index does not; without fresh topics, every
step would measure the broker's history more than the pipeline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench import broker, stages
from bench.figures import Figure, at_least, at_most, median
from bench.infra import REPO, BenchInfra, cpu_seconds
from bench.traffic import batch_bodies
from devstack.broker import free_port
from devstack.processes import ServiceProcess, StackAddresses
from shared.topics import ROUTING_SDR

SECTION = "pipeline"
SERVICES = ("ingest", "enrich", "score", "router")
WRITE_KEY = "bench-key"
LATENCY_LOADS = (100, 1000)  # events/s, plus half the sustained load
WARM_UP_S = 5.0
WINDOWS = 3  # speed-to-lead percentiles: the median of this many windows of a load
FULL_LOAD_S = 10.0
DRAIN_LIMIT_S = 3.0
BATCH_SIZE = 50
READER_LAG_S = 1.5  # how far the decisions' reader may be behind (its fetch wait, 500 ms)
IN_FLIGHT = 8  # concurrent /v1/batch requests at most (a site has many browsers)
SUSTAINED_GOAL = 5000.0
SPEED_TO_LEAD_GOAL_MS = 250.0
RSS_GOAL_MB = 150.0
# Each consuming service's main topic, and how many of its messages the service has applied.
APPLIED = {
    "enrich": (
        "events.raw",
        "SELECT coalesce(sum(next_offset), 0) FROM enrich.consumer_offsets WHERE topic = $1",
    ),
    "score": (
        "events.enriched",
        "SELECT coalesce(sum(next_offset), 0) FROM score.consumer_offsets WHERE topic = $1",
    ),
    "router": (
        "leads.lifecycle",
        "SELECT coalesce(sum(next_offset), 0) FROM router.consumer_offsets WHERE topic = $1",
    ),
}


@dataclass
class Decision:
    decided: float  # epoch
    speed_ms: int


@dataclass
class Stack:
    """The running services, the traffic still to send, and what came out."""

    addresses: StackAddresses
    processes: list[ServiceProcess]
    bodies: Iterator[bytes]
    acknowledged: int = 0
    failed_batches: int = 0
    decisions: list[Decision] = field(default_factory=list)

    async def applied(self) -> dict[str, int]:
        """Messages each consuming service has applied (offsets stored with its effects)."""
        url = self.addresses.database_url.replace("+asyncpg", "")
        connection = await asyncpg.connect(url)
        try:
            return {
                service: int(await connection.fetchval(query, self.addresses.topic_prefix + topic))
                for service, (topic, query) in APPLIED.items()
            }
        finally:
            await connection.close()


async def run(infra: BenchInfra) -> list[Figure]:
    seconds = float(os.environ.get("BENCH_PIPELINE_S", "30"))
    ceiling = next(f.value for f in await broker.run(infra) if "produce" in f.name)
    stacks = Stacks(
        infra=infra,
        database_url=await infra.fresh_database(),
        bodies=batch_bodies(seed=1, batch_size=BATCH_SIZE),
    )
    async with stacks.fresh() as stack:
        full_load = await _full_load(stack)
    sustained = await _highest_sustained(stacks, estimate=min(full_load.values()), seconds=seconds)
    figures = [
        Figure(SECTION, f"{service} events/s at full load", rate, "ev/s")
        for service, rate in full_load.items()
    ]
    figures += [
        at_least(SECTION, "sustained end to end", sustained, "ev/s", SUSTAINED_GOAL),
        Figure(SECTION, "raw broker ceiling (aiokafka produce)", ceiling, "msg/s"),
        Figure(SECTION, "sustained / broker ceiling", 100 * sustained / ceiling, "%"),
    ]
    for rate in (*LATENCY_LOADS, max(int(sustained / 2), 10)):
        async with stacks.fresh() as stack:
            figures += await _speed_to_lead(stack, stacks.infra, rate=rate, seconds=seconds)
    figures += [
        at_most(SECTION, f"peak RSS {service}", rss, "MB", RSS_GOAL_MB)
        for service, rss in stacks.peak_rss_mb.items()
    ]
    return figures


@dataclass
class Stacks:
    """Starts each step's stack: the same database and visitors, new topics (module doc)."""

    infra: BenchInfra
    database_url: str
    bodies: Iterator[bytes]
    peak_rss_mb: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SERVICES, 0.0))

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[Stack]:
        """The four services on new topics, and a reader of their decisions, until the block
        ends; then each service's peak RSS is kept and the processes stopped."""
        addresses = StackAddresses(
            kafka_bootstrap=self.infra.kafka_bootstrap,
            database_url=self.database_url,
            topic_prefix=await self.infra.fresh_topic_prefix(),
            write_keys={WRITE_KEY: "bench-site"},
            ingest_port=free_port(),
            health_ports={name: free_port() for name in SERVICES[1:]},
        )
        logs = REPO / ".bench" / "logs" / "pipeline"
        logs.mkdir(parents=True, exist_ok=True)
        processes = [
            ServiceProcess(name, addresses, log_file=logs / f"{name}.log").start()
            for name in SERVICES
        ]
        stack = Stack(addresses=addresses, processes=processes, bodies=self.bodies)
        reader: asyncio.Task[None] | None = None
        try:
            await asyncio.gather(*(asyncio.to_thread(p.wait_ready) for p in processes))
            reader = asyncio.create_task(_read_decisions(stack))
            await asyncio.sleep(1)  # the reader has joined the topic
            yield stack
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            for process in processes:
                rss = _peak_rss_mb(process)
                self.peak_rss_mb[process.service] = max(self.peak_rss_mb[process.service], rss)
                await asyncio.to_thread(process.stop)


async def _full_load(stack: Stack) -> dict[str, float]:
    """Events/s per stage while ingest takes all it can (see the module docstring)."""
    load = asyncio.create_task(_post(stack, rate=None, seconds=WARM_UP_S + FULL_LOAD_S))
    await asyncio.sleep(WARM_UP_S)
    acknowledged, before, t0 = stack.acknowledged, await stack.applied(), time.monotonic()
    await load
    elapsed = time.monotonic() - t0
    after = await stack.applied()
    rates = {"ingest": (stack.acknowledged - acknowledged) / elapsed}
    rates |= {s: (after[s] - before[s]) / elapsed for s in ("enrich", "score")}
    await _drain(stack, limit_s=600)
    return rates


async def _highest_sustained(stacks: Stacks, *, estimate: float, seconds: float) -> float:
    """The highest steady load the pipeline keeps up with: from `estimate` up by half steps
    until one is not kept up with, then bisected twice between the last kept and that one
    (or halved from `estimate` down until one is kept up with)."""

    async def holds(trial: float) -> bool:
        async with stacks.fresh() as stack:
            await _post(stack, rate=trial, seconds=seconds)
            drain = await _drain(stack, limit_s=600)
        print(f"[bench] pipeline: {trial:,.0f} ev/s for {seconds:.0f}s, drained in {drain:.1f}s")
        return drain <= DRAIN_LIMIT_S

    rate = max(estimate, 50.0)
    best, failed = 0.0, 0.0
    for factor in (1.0, 1.5, 2.0, 3.0, 4.0):
        if not await holds(rate * factor):
            failed = rate * factor
            break
        best = rate * factor
    if best == 0.0:  # even the estimate was too much
        trial = rate / 2
        while trial >= 25:
            if await holds(trial):
                return trial
            trial /= 2
        return 0.0
    for _ in range(2 if failed else 0):
        middle = (best + failed) / 2
        if await holds(middle):
            best = middle
        else:
            failed = middle
    return best


async def _speed_to_lead(
    stack: Stack, infra: BenchInfra, *, rate: int, seconds: float
) -> list[Figure]:
    """Percentiles per window of the load (WINDOWS equal parts after the warm-up; decisions made
    while the pipeline drained count in the last), each figure the median over the windows."""
    started = time.time()
    cpu = asyncio.create_task(_cpu_share(stack, infra, after_s=WARM_UP_S, for_s=seconds))
    await _post(stack, rate=rate, seconds=WARM_UP_S + seconds)
    ended = time.time()
    shares = await cpu
    drain = await _drain(stack, limit_s=600)
    await asyncio.sleep(READER_LAG_S)  # the reader has the last decisions too
    width = seconds / WINDOWS
    windows: list[list[int]] = [[] for _ in range(WINDOWS)]
    for decision in stack.decisions:
        offset = decision.decided - (started + WARM_UP_S)
        if offset >= 0 and decision.decided <= ended + drain:
            windows[min(int(offset / width), WINDOWS - 1)].append(decision.speed_ms)

    def percentile(q: float) -> float:
        values = [_percentile(sorted(w), q) for w in windows if w]
        return median(values) if values else float("nan")

    label = f"@ {rate:,} ev/s"
    p99 = (
        at_most(
            SECTION, f"speed-to-lead p99 {label}", percentile(0.99), "ms", SPEED_TO_LEAD_GOAL_MS
        )
        if rate == 1000
        else Figure(SECTION, f"speed-to-lead p99 {label}", percentile(0.99), "ms")
    )
    where_cpu_goes = (
        [
            Figure(SECTION, f"CPU {label}: {process}", share, "% of a core")
            for process, share in shares.items()
        ]
        + [Figure(SECTION, f"CPU {label}: all", sum(shares.values()), f"% of {os.cpu_count()}")]
        if rate == 1000
        else []
    )
    return [
        *where_cpu_goes,
        *(
            await _stage_delays(stack, label=label, since=started + WARM_UP_S)
            if rate == 1000
            else []
        ),
        Figure(SECTION, f"SDR decisions {label}", sum(map(len, windows)), "decisions"),
        Figure(SECTION, f"speed-to-lead p50 {label}", percentile(0.50), "ms"),
        Figure(SECTION, f"speed-to-lead p95 {label}", percentile(0.95), "ms"),
        p99,
        Figure(SECTION, f"drain after the load stopped {label}", drain, "s"),
    ]


async def _stage_delays(stack: Stack, *, label: str, since: float) -> list[Figure]:
    """p50 / p99 from ingest receipt to each stage's output (bench/stages.py)."""
    figures = []
    for service, topic in stages.STAGES:
        delays = await stages.delays_ms(
            bootstrap=stack.addresses.kafka_bootstrap,
            prefix=stack.addresses.topic_prefix,
            topic=topic,
            received_since=since,
        )
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            value = _percentile(delays, q) if delays else float("nan")
            figures.append(
                Figure(SECTION, f"ingest -> {topic.name} {name} {label} ({service})", value, "ms")
            )
    return figures


async def _cpu_share(
    stack: Stack, infra: BenchInfra, *, after_s: float, for_s: float
) -> dict[str, float]:
    """Each process's CPU over `for_s` seconds from `after_s` on, in % of one core: the four
    services, PostgreSQL and the broker (what bounds the pipeline on this machine)."""

    def used() -> dict[str, float]:
        services = {
            p.service: cpu_seconds(p.process.pid) if p.process else 0.0 for p in stack.processes
        }
        return services | infra.infrastructure_cpu_s()

    await asyncio.sleep(after_s)
    before, t0 = used(), time.monotonic()
    await asyncio.sleep(for_s)
    after, elapsed = used(), time.monotonic() - t0
    return {name: 100 * (after[name] - before[name]) / elapsed for name in before}


def _percentile(ordered: Sequence[float], q: float) -> float:
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def _post(stack: Stack, *, rate: float | None, seconds: float) -> None:
    """Post batches on a fixed schedule (open loop: a slow answer does not slow the schedule, up
    to IN_FLIGHT requests at once; beyond that the schedule waits, which shows as a lower
    acknowledged rate). `rate=None`: as fast as ingest answers."""
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    interval = BATCH_SIZE / rate if rate else 0.0
    slots = asyncio.Semaphore(IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.addresses.ingest_port}", timeout=30, limits=limits
    ) as client:

        async def post(body: bytes) -> None:
            try:
                response = await client.post("/v1/batch", content=body, headers=headers)
                if response.status_code == 200:
                    stack.acknowledged += BATCH_SIZE
                else:
                    stack.failed_batches += 1
            except httpx.HTTPError:
                stack.failed_batches += 1
            finally:
                slots.release()

        started = time.monotonic()
        for n, body in enumerate(stack.bodies):
            due = started + n * interval
            if time.monotonic() - started >= seconds:
                break
            await asyncio.sleep(max(due - time.monotonic(), 0))
            await slots.acquire()
            task = asyncio.create_task(post(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def _drain(stack: Stack, *, limit_s: float) -> float:
    """Seconds until the pipeline has applied everything ingest acknowledged: enrich has applied
    every raw event, and score and router have not moved for a second (they had nothing left)."""
    started = time.monotonic()
    still_since, last = time.monotonic(), await stack.applied()
    while time.monotonic() - started < limit_s:
        await asyncio.sleep(0.2)
        now = await stack.applied()
        if now != last:
            still_since, last = time.monotonic(), now
        elif now["enrich"] >= stack.acknowledged and time.monotonic() - still_since >= 1.0:
            return max(still_since - started, 0.0)
    return limit_s


async def _read_decisions(stack: Stack) -> None:
    consumer = AIOKafkaConsumer(
        ROUTING_SDR.full_name(stack.addresses.topic_prefix),
        bootstrap_servers=stack.addresses.kafka_bootstrap,
        group_id=f"bench-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Kafka's default, as a CRM's consumer would have it: speed-to-lead is the decision's
        # own `speed_to_lead_ms`, so how soon this reader sees it changes no figure, and a
        # reader polling every 20 ms cost the broker ~5% of a core on this machine.
        fetch_max_wait_ms=500,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    decision = orjson.loads(record.value)
                    if decision.get("supersedes"):
                        # A reassignment after a missed SLA (no CRM answers in the benchmark):
                        # not a first answer to the lead, so not speed-to-lead.
                        continue
                    stack.decisions.append(
                        Decision(
                            decided=datetime.fromisoformat(decision["decided_at"]).timestamp(),
                            speed_ms=int(decision["speed_to_lead_ms"]),
                        )
                    )
    finally:
        await consumer.stop()


def _peak_rss_mb(process: ServiceProcess) -> float:
    """The process's peak resident set (VmHWM), in MB; 0 when it is gone."""
    if process.process is None:
        return 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
