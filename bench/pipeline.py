"""End to end: speed-to-lead at steady loads through the whole stack.

The four services run as their own processes (`python -m services.<name>`, as deployed) on the
bench broker and a fresh database; realistic website traffic (bench/traffic.py) is posted to
ingest as Segment `/v1/batch` calls at a fixed rate for `BENCH_PIPELINE_S` seconds (default
30) after a 5 s warm-up. Speed-to-lead is each `routing.sdr` decision's `speed_to_lead_ms`:
from ingest receiving the event that made the lead an MQL to the router's decision (one clock:
the same machine). Also reported: the rate ingest acknowledged, how long the pipeline needed
after the load stopped to route the last MQL (a growing backlog shows as a long drain), and
each service's peak RSS.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from aiokafka import AIOKafkaConsumer

from bench.figures import Figure, at_most
from bench.infra import REPO, BenchInfra
from bench.traffic import batch_bodies
from devstack.broker import free_port
from devstack.processes import ServiceProcess, StackAddresses
from shared.topics import ROUTING_SDR

SECTION = "pipeline"
SERVICES = ("ingest", "enrich", "score", "router")
WRITE_KEY = "bench-key"
LOADS = (100, 1000)  # events/s
WARM_UP_S = 5.0
BATCH_SIZE = 50
IN_FLIGHT = 8  # concurrent /v1/batch requests at most (a site has many browsers)
SPEED_TO_LEAD_GOAL_MS = 250.0
RSS_GOAL_MB = 150.0


@dataclass
class LoadRun:
    rate: int
    seconds: float
    sent_events: int = 0
    acknowledged_events: int = 0
    failed_batches: int = 0
    speed_to_lead_ms: list[int] = field(default_factory=list)
    drain_s: float = 0.0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.speed_to_lead_ms)
        if not ordered:
            return float("nan")
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


async def run(infra: BenchInfra) -> list[Figure]:
    seconds = float(os.environ.get("BENCH_PIPELINE_S", "30"))
    figures: list[Figure] = []
    rss: dict[str, float] = {}
    for rate in LOADS:
        result = await _steady_load(infra, rate=rate, seconds=seconds)
        label = f"@ {rate:,} ev/s"
        p99 = result.percentile(0.99)
        figures += [
            Figure(
                SECTION,
                f"events/s acknowledged by ingest {label}",
                result.acknowledged_events / (WARM_UP_S + result.seconds),
                "ev/s",
            ),
            Figure(SECTION, f"SDR decisions {label}", len(result.speed_to_lead_ms), "decisions"),
            Figure(SECTION, f"speed-to-lead p50 {label}", result.percentile(0.50), "ms"),
            Figure(SECTION, f"speed-to-lead p95 {label}", result.percentile(0.95), "ms"),
            (
                at_most(SECTION, f"speed-to-lead p99 {label}", p99, "ms", SPEED_TO_LEAD_GOAL_MS)
                if rate == 1000
                else Figure(SECTION, f"speed-to-lead p99 {label}", p99, "ms")
            ),
            Figure(SECTION, f"drain after the load stopped {label}", result.drain_s, "s"),
        ]
        for service, mb in result.peak_rss_mb.items():
            rss[service] = max(rss.get(service, 0.0), mb)
    figures += [
        at_most(SECTION, f"peak RSS {service}", mb, "MB", RSS_GOAL_MB)
        for service, mb in rss.items()
    ]
    return figures


async def _steady_load(infra: BenchInfra, *, rate: int, seconds: float) -> LoadRun:
    addresses = StackAddresses(
        kafka_bootstrap=infra.kafka_bootstrap,
        database_url=await infra.fresh_database(),
        topic_prefix=await infra.fresh_topic_prefix(),
        write_keys={WRITE_KEY: "bench-site"},
        ingest_port=free_port(),
        health_ports={name: free_port() for name in SERVICES[1:]},
    )
    logs = REPO / ".bench" / "logs" / f"pipeline-{rate}"
    logs.mkdir(parents=True, exist_ok=True)
    processes = [
        ServiceProcess(name, addresses, log_file=logs / f"{name}.log").start() for name in SERVICES
    ]
    total_s = WARM_UP_S + seconds
    bodies, _ = batch_bodies(
        seed=rate, events=int(rate * total_s) + BATCH_SIZE, batch_size=BATCH_SIZE
    )
    result = LoadRun(rate=rate, seconds=seconds)
    try:
        await asyncio.gather(*(asyncio.to_thread(p.wait_ready) for p in processes))
        decisions: list[tuple[float, int, float]] = []  # (arrival, speed ms, decided epoch)
        stop_reading = asyncio.Event()
        reader = asyncio.create_task(_read_decisions(addresses, into=decisions, stop=stop_reading))
        await asyncio.sleep(1)  # the reader has joined and sits at the end of the topic
        load_started = time.time()
        await _post_at_rate(addresses, bodies, rate=rate, seconds=total_s, into=result)
        load_ended = time.monotonic()
        await _settle(decisions, quiet_s=5.0)
        stop_reading.set()
        await reader
        measured_from = load_started + WARM_UP_S
        result.speed_to_lead_ms = [ms for _, ms, at in decisions if at >= measured_from]
        last = max((arrival for arrival, _, _ in decisions), default=load_ended)
        result.drain_s = max(last - load_ended, 0.0)
        result.peak_rss_mb = {p.service: _peak_rss_mb(p) for p in processes}
    finally:
        for process in processes:
            await asyncio.to_thread(process.stop)
    return result


async def _post_at_rate(
    addresses: StackAddresses, bodies: list[bytes], *, rate: int, seconds: float, into: LoadRun
) -> None:
    """Post batches on a fixed schedule (open loop: a slow answer does not slow the schedule,
    up to IN_FLIGHT requests at once; a batch that finds every slot busy waits, which shows as
    an acknowledged rate below the target)."""
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    interval = BATCH_SIZE / rate
    slots = asyncio.Semaphore(IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)

    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{addresses.ingest_port}", timeout=30, limits=limits
    ) as client:

        async def post(body: bytes) -> None:
            try:
                response = await client.post("/v1/batch", content=body, headers=headers)
                if response.status_code == 200:
                    into.acknowledged_events += BATCH_SIZE
                else:
                    into.failed_batches += 1
            except httpx.HTTPError:
                into.failed_batches += 1
            finally:
                slots.release()

        started = time.monotonic()
        for n, body in enumerate(bodies):
            due = started + n * interval
            if due - started >= seconds:
                break
            await asyncio.sleep(max(due - time.monotonic(), 0))
            await slots.acquire()
            into.sent_events += BATCH_SIZE
            task = asyncio.create_task(post(body))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def _read_decisions(
    addresses: StackAddresses, *, into: list[tuple[float, int, float]], stop: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        ROUTING_SDR.full_name(addresses.topic_prefix),
        bootstrap_servers=addresses.kafka_bootstrap,
        group_id=f"bench-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    decision = orjson.loads(record.value)
                    decided = _epoch(decision["decided_at"])
                    into.append((time.monotonic(), int(decision["speed_to_lead_ms"]), decided))
    finally:
        await consumer.stop()


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def _settle(decisions: list[tuple[float, int, float]], *, quiet_s: float) -> None:
    """Wait until no decision has arrived for `quiet_s` (at most two minutes)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        last = decisions[-1][0] if decisions else 0.0
        if time.monotonic() - last > quiet_s:
            return
        await asyncio.sleep(0.5)


def _peak_rss_mb(process: ServiceProcess) -> float:
    """The process's peak resident set (VmHWM), in MB; 0 when it is gone."""
    if process.process is None:
        return 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
