"""End to end: sustained throughput and speed-to-lead through the whole stack.

The four services run as their own processes (`python -m services.<name>`, as deployed) on the
bench broker and a fresh database; realistic website traffic (bench/traffic.py) is posted to
ingest as Segment `/v1/batch` calls (bench/posting.py). Each step starts the services afresh
on a new database and new topics (below). The method, one line per figure:

1. Per stage at full load: ingest is driven as fast as it answers for FULL_LOAD_S after a
   warm-up; each consuming service's rate is read from its stored offsets. The slowest stage
   is where the ladder starts.
2. Sustained: steady loads from that estimate upwards (x1, x1.5, x2, ...; halved downwards
   when the estimate is not kept up with) for `BENCH_PIPELINE_S` seconds each (default 30),
   bisected three times between the highest load kept up with and the lowest not. A load is kept up with when ingest acknowledged every batch on time
   (no refused, failed, late or unsent batch: bench/posting.py), nothing was dead-lettered,
   and the pipeline drained within DRAIN_LIMIT_S of the load's end (bench/drain.py: every
   consumer's stored position at the end of every topic it reads, its outputs acknowledged,
   every process alive). The highest load kept up with is then run `BENCH_RUNS` times in all
   (default 3) and must hold each time (else the next lower one is tried); the figure is the
   lowest rate ingest acknowledged over those runs, with each run's beside it. It is also
   printed as a share of the raw broker ceiling measured in the same run.
3. Speed-to-lead at 100 and 1,000 events/s and at half the sustained load, `BENCH_RUNS` runs
   of each: every first `routing.sdr` decision whose triggering event ingest received after a
   5 s warm-up and before the load ended. Two clocks, one machine: the decision's own
   `speed_to_lead_ms` (ingest receipt to the router storing it, just before its commit), and
   the record's Kafka timestamp minus `received_at` (after the commit, when the router handed
   it to the broker). p50/p95/p99 are over all decisions of all runs, each run's p99 beside.
   At 1,000 events/s also where that time accumulates (bench/stages.py) and each process's
   CPU (the median of the runs), and the old method's p99 for comparison (the router's
   handler start, the median of three windows' percentiles, the median of the runs).

Also: each service's peak RSS over the whole run.

Why a new database and new topics per step, dropped and deleted after it: each trial then
measures the same conditions. The development broker keeps everything in memory and its fetch
cost grows with what a topic holds (its memory storage lists a partition's stored batches on
each fetch: one consumer of 1,000 records/s took Tansu from 14% to 52% of a core in 60 s here),
which Kafka's offset index does not; and a database shared by every step grows with each, with
autovacuum working on the earlier steps' rows during the later ones (seen at ~20% of a core on
2026-12-02, when a load kept up with in one trial was not in a later one).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer

from bench import broker, stages
from bench.drain import DrainWatch
from bench.figures import Figure, at_least, at_most, median
from bench.infra import REPO, BenchInfra, cpu_seconds, dead_letters
from bench.posting import BATCH_SIZE, Posted, post
from bench.traffic import batch_bodies
from devstack.broker import free_port
from devstack.processes import ServiceProcess, StackAddresses
from shared.kafka import aiokafka_connection
from shared.settings import KafkaSettings
from shared.topics import ROUTING_SDR

SECTION = "pipeline"
SERVICES = ("ingest", "enrich", "score", "router")
WRITE_KEY = "bench-key"
LATENCY_LOADS = (100, 1000)  # events/s, plus half the sustained load
WARM_UP_S = 5.0
FULL_LOAD_S = 10.0
DRAIN_LIMIT_S = 3.0
OLD_WINDOWS = 3  # the old method's percentiles: the median of this many windows of a load
READER_LAG_S = 1.5  # how far the decisions' reader may be behind (its fetch wait, 500 ms)
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
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
}


@dataclass(frozen=True)
class Decision:
    """A first sdr decision as the bench reader saw it (epoch seconds, milliseconds)."""

    received: float  # when ingest received the triggering event
    speed_ms: int  # the decision's own speed_to_lead_ms (to stored_at)
    on_broker_ms: float  # the record's Kafka timestamp - received
    old_method_ms: float  # decided_at - received: what the figure was before stored_at
    decided: float  # decided_at


@dataclass
class Stack:
    """The running services, the traffic still to send, and what came out."""

    addresses: StackAddresses
    processes: list[ServiceProcess]
    bodies: Iterator[bytes]
    decisions: list[Decision] = field(default_factory=list)

    async def post(self, *, rate: float | None, seconds: float) -> Posted:
        return await post(
            port=self.addresses.ingest_port,
            write_key=WRITE_KEY,
            bodies=self.bodies,
            rate=rate,
            seconds=seconds,
        )

    async def drain(self, *, limit_s: float) -> float:
        """Seconds until drained (bench/drain.py); raises ProcessDied when a service ended."""
        async with DrainWatch(
            database_url=self.addresses.database_url,
            bootstrap=self.addresses.kafka_bootstrap,
            prefix=self.addresses.topic_prefix,
        ) as watch:
            return await watch.wait(self.processes, limit_s=limit_s)

    async def dead_letters(self) -> int:
        """Records on the stack's dead-letter topics (realistic traffic makes none)."""
        return await dead_letters(self.addresses.kafka_bootstrap, self.addresses.topic_prefix)

    async def applied(self) -> dict[str, int]:
        """Messages enrich and score have applied (offsets stored with their effects)."""
        url = self.addresses.database_url.replace("+asyncpg", "")
        connection = await asyncpg.connect(url)
        try:
            return {
                service: int(await connection.fetchval(query, self.addresses.topic_prefix + topic))
                for service, (topic, query) in APPLIED.items()
            }
        finally:
            await connection.close()


@dataclass(frozen=True)
class Trial:
    """One load of the sustained ladder: what ingest took, and how the pipeline followed."""

    posted: Posted
    drain_s: float
    dead_letters: int

    @property
    def kept_up(self) -> bool:
        return not self.posted.faults() and not self.dead_letters and self.drain_s <= DRAIN_LIMIT_S

    def describe(self) -> str:
        faults = self.posted.faults() + (
            [f"{self.dead_letters} dead letters"] if self.dead_letters else []
        )
        return (
            f"{self.posted.rate:,.0f} ev/s for {self.posted.seconds:.0f}s: acknowledged"
            f" {self.posted.achieved:,.0f} ev/s, drained in {self.drain_s:.1f}s"
            + (f", {'; '.join(faults)}" if faults else "")
            + (" -> kept up" if self.kept_up else " -> NOT kept up")
        )


async def run(infra: BenchInfra) -> list[Figure]:
    seconds = float(os.environ.get("BENCH_PIPELINE_S", "30"))
    ceiling = next(f.value for f in await broker.run(infra) if "produce" in f.name)
    stacks = Stacks(infra=infra, bodies=batch_bodies(seed=1, batch_size=BATCH_SIZE))
    async with stacks.fresh() as stack:
        full_load = await _full_load(stack)
    sustained = await _highest_sustained(stacks, estimate=min(full_load.values()), seconds=seconds)
    rate = min(sustained) if sustained else 0.0
    figures = [
        Figure(SECTION, f"{service} events/s at full load", value, "ev/s")
        for service, value in full_load.items()
    ]
    figures += [
        at_least(SECTION, "sustained end to end", rate, "ev/s", SUSTAINED_GOAL, runs=sustained),
        Figure(SECTION, "raw broker ceiling (aiokafka produce)", ceiling, "msg/s"),
        Figure(SECTION, "sustained / broker ceiling", 100 * rate / ceiling, "%"),
    ]
    for load in (*LATENCY_LOADS, max(int(rate / 2), 10)):
        figures += await _speed_to_lead(stacks, rate=load, seconds=seconds)
    figures += [
        at_most(SECTION, f"peak RSS {service}", rss, "MB", RSS_GOAL_MB)
        for service, rss in stacks.peak_rss_mb.items()
    ]
    return figures


@dataclass
class Stacks:
    """Starts each step's stack: the same stream of visitors, a new database and new topics,
    dropped and deleted when the step ends (module doc). `services` and their extra
    environment (`service_env`) are the pipeline's four unless told (bench/sync.py adds sync)."""

    infra: BenchInfra
    bodies: Iterator[bytes]
    services: tuple[str, ...] = SERVICES
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[Stack]:
        """The four services on a new database and new topics, and a reader of their
        decisions, until the block ends; then each service's peak RSS is kept, the processes
        stopped, the database dropped and the topics deleted."""
        addresses = StackAddresses(
            kafka_bootstrap=self.infra.kafka_bootstrap,
            database_url=await self.infra.fresh_database(),
            topic_prefix=await self.infra.fresh_topic_prefix(),
            write_keys={WRITE_KEY: "bench-site"},
            ingest_port=free_port(),
            health_ports={name: free_port() for name in self.services},
            api_ports={name: free_port() for name in ("enrich", "score", "router")},
            service_env=self.service_env,
        )
        logs = REPO / ".bench" / "logs" / "pipeline"
        logs.mkdir(parents=True, exist_ok=True)
        processes = [
            ServiceProcess(name, addresses, log_file=logs / f"{name}.log").start()
            for name in self.services
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
                before = self.peak_rss_mb.get(process.service, 0.0)
                self.peak_rss_mb[process.service] = max(before, rss)
                await asyncio.to_thread(process.stop)
            await self.infra.drop_database(addresses.database_url)
            await self.infra.delete_topics(addresses.topic_prefix)


async def _full_load(stack: Stack) -> dict[str, float]:
    """Events/s per stage while ingest takes all it can (see the module docstring)."""
    load = asyncio.create_task(stack.post(rate=None, seconds=WARM_UP_S + FULL_LOAD_S))
    await asyncio.sleep(WARM_UP_S)
    before, t0 = await stack.applied(), time.monotonic()
    posted = await load
    elapsed = time.monotonic() - t0
    after = await stack.applied()
    if posted.faults():
        print(f"[bench] pipeline: full load: {'; '.join(posted.faults())}")
    # ingest's rate over the whole load (its warm-up is its first requests, a few ms)
    rates = {"ingest": posted.achieved}
    rates |= {s: (after[s] - before[s]) / elapsed for s in ("enrich", "score")}
    await stack.drain(limit_s=600)
    return rates


async def _highest_sustained(stacks: Stacks, *, estimate: float, seconds: float) -> list[float]:
    """`sustained_ladder` over trials of `seconds` each, each on a fresh stack."""

    async def trial(rate: float) -> Trial:
        async with stacks.fresh() as stack:
            posted = await stack.post(rate=rate, seconds=seconds)
            drain = await stack.drain(limit_s=600)
            result = Trial(posted, drain, await stack.dead_letters())
        print(f"[bench] pipeline: {result.describe()}", flush=True)
        return result

    return await sustained_ladder(trial, estimate=estimate, runs=RUNS)


async def sustained_ladder(
    trial: Callable[[float], Awaitable[Trial]], *, estimate: float, runs: int
) -> list[float]:
    """The rates ingest acknowledged in each of `runs` trials of the highest load kept up with
    every time (empty: none was). From `estimate` up by half steps until a load is not kept up
    with (or, when the estimate is not, halved until one is), then bisected three times
    between the highest load kept up with and the lowest not; then the highest kept is tried
    again until it has `runs` trials, falling back to the next lower load kept up with when
    one fails, and below the lowest by fifths when none is left."""
    kept: dict[float, list[float]] = {}  # load -> acknowledged rates of its trials

    async def holds(rate: float) -> bool:
        result = await trial(rate)
        if result.kept_up:
            kept.setdefault(rate, []).append(result.posted.achieved)
        return result.kept_up

    start = max(estimate, 50.0)
    best, failed = 0.0, 0.0
    for factor in (1.0, 1.5, 2.0, 3.0, 4.0):
        if not await holds(start * factor):
            failed = start * factor
            break
        best = start * factor
    if best == 0.0:  # even the estimate was too much: halve down until one holds
        rate = start / 2
        while rate >= 25:
            if await holds(rate):
                best = rate
                break
            failed, rate = rate, rate / 2
    for _ in range(3 if best and failed else 0):
        middle = (best + failed) / 2
        if await holds(middle):
            best = middle
        else:
            failed = middle
    for rate in sorted(kept, reverse=True):
        while len(kept[rate]) < runs:
            if not await holds(rate):
                break
        else:
            return kept[rate]
    # No load held in every run: down by fifths from the lowest tried until one does.
    rate = min([*kept, failed or start]) * 0.8
    while rate >= 25:
        for _ in range(runs):
            if not await holds(rate):
                break
        else:
            return kept[rate]
        rate *= 0.8
    return []


async def _speed_to_lead(stacks: Stacks, *, rate: int, seconds: float) -> list[Figure]:
    """RUNS runs of a steady load; the figures over the decisions of every run (module doc)."""
    label = f"@ {rate:,} ev/s"
    runs: list[list[Decision]] = []
    cpu: list[dict[str, float]] = []
    delays: dict[str, list[float]] = {}
    drains: list[float] = []
    old: list[float] = []
    for _ in range(RUNS):
        async with stacks.fresh() as stack:
            started = time.time()
            measuring = asyncio.create_task(
                _cpu_share(stack, stacks.infra, after_s=WARM_UP_S, for_s=seconds)
            )
            posted = await stack.post(rate=rate, seconds=WARM_UP_S + seconds)
            ended = time.time()
            cpu.append(await measuring)
            drains.append(await stack.drain(limit_s=600))
            await asyncio.sleep(READER_LAG_S)  # the reader has the last decisions too
            if posted.faults():
                print(f"[bench] pipeline: speed-to-lead {label}: {'; '.join(posted.faults())}")
            runs.append([d for d in stack.decisions if started + WARM_UP_S <= d.received <= ended])
            if rate == 1000:
                for name, values in (await _stage_delays(stack, since=started + WARM_UP_S)).items():
                    delays.setdefault(name, []).extend(values)
            old.append(_old_method_p99(runs[-1], since=started + WARM_UP_S, seconds=seconds))
    every = sorted(d.speed_ms for run in runs for d in run)
    on_broker = sorted(d.on_broker_ms for run in runs for d in run)
    p99_runs = [_percentile(sorted(d.speed_ms for d in run), 0.99) for run in runs]
    p99 = _percentile(every, 0.99)
    figures = [
        Figure(
            SECTION, f"SDR decisions {label}", len(every), "decisions", runs=[len(r) for r in runs]
        ),
        Figure(SECTION, f"speed-to-lead p50 {label}", _percentile(every, 0.50), "ms"),
        Figure(SECTION, f"speed-to-lead p95 {label}", _percentile(every, 0.95), "ms"),
        at_most(
            SECTION, f"speed-to-lead p99 {label}", p99, "ms", SPEED_TO_LEAD_GOAL_MS, runs=p99_runs
        )
        if rate == 1000
        else Figure(SECTION, f"speed-to-lead p99 {label}", p99, "ms", runs=p99_runs),
        Figure(
            SECTION,
            f"on the broker p50 {label} (record timestamp)",
            _percentile(on_broker, 0.50),
            "ms",
        ),
        Figure(
            SECTION,
            f"on the broker p99 {label} (record timestamp)",
            _percentile(on_broker, 0.99),
            "ms",
        ),
        Figure(SECTION, f"drain after the load stopped {label}", max(drains), "s", runs=drains),
    ]
    if rate != 1000:
        return figures
    figures.append(
        Figure(SECTION, f"speed-to-lead p99 {label}, old method", median(old), "ms", runs=old)
    )
    for name in cpu[0]:
        shares = [c[name] for c in cpu]
        figures.append(
            Figure(SECTION, f"CPU {label}: {name}", median(shares), "% of a core", runs=shares)
        )
    totals = [sum(c.values()) for c in cpu]
    figures.append(
        Figure(SECTION, f"CPU {label}: all", median(totals), f"% of {os.cpu_count()}", runs=totals)
    )
    for name, values in delays.items():
        ordered = sorted(values)
        for q_name, q in (("p50", 0.5), ("p99", 0.99)):
            figures.append(
                Figure(SECTION, f"{name} {q_name} {label}", _percentile(ordered, q), "ms")
            )
    return figures


def _old_method_p99(decisions: Sequence[Decision], *, since: float, seconds: float) -> float:
    """The p99 as this bench reported it before 2026-12: the speed to the handler's start
    (`decided_at`), decisions windowed by when they were decided, the median of the windows'
    p99s (a bad window disappears: why it was replaced)."""
    width = seconds / OLD_WINDOWS
    windows: list[list[float]] = [[] for _ in range(OLD_WINDOWS)]
    for decision in decisions:
        offset = decision.decided - since
        if offset >= 0:
            windows[min(int(offset / width), OLD_WINDOWS - 1)].append(decision.old_method_ms)
    values = [_percentile(sorted(w), 0.99) for w in windows if w]
    return median(values) if values else float("nan")


async def _stage_delays(stack: Stack, *, since: float) -> dict[str, list[float]]:
    """Delays from ingest receipt to each stage's output (bench/stages.py), by figure name."""
    delays = {}
    for service, topic in stages.STAGES:
        delays[f"ingest -> {topic.name} ({service})"] = await stages.delays_ms(
            bootstrap=stack.addresses.kafka_bootstrap,
            prefix=stack.addresses.topic_prefix,
            topic=topic,
            received_since=since,
        )
    return delays


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
    """The nearest-rank percentile of sorted values (nan when there are none)."""
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def _read_decisions(stack: Stack) -> None:
    consumer = AIOKafkaConsumer(
        ROUTING_SDR.full_name(stack.addresses.topic_prefix),
        **aiokafka_connection(KafkaSettings(bootstrap_servers=stack.addresses.kafka_bootstrap)),
        group_id=f"bench-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Kafka's default, as a CRM's consumer would have it: speed-to-lead is read from the
        # decision and its record's timestamp, so how soon this reader sees it changes no
        # figure, and a reader polling every 20 ms cost the broker ~5% of a core here.
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
                    received = datetime.fromisoformat(decision["received_at"]).timestamp()
                    decided = datetime.fromisoformat(decision["decided_at"]).timestamp()
                    stack.decisions.append(
                        Decision(
                            received=received,
                            speed_ms=int(decision["speed_to_lead_ms"]),
                            on_broker_ms=record.timestamp - 1000 * received,
                            old_method_ms=1000 * (decided - received),
                            decided=decided,
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
