"""sync: webhook delivery, measured where a CRM would measure it, at its endpoint.

A destination is an HTTP server in the bench process on the loopback (`Endpoint`): it notes
when each request arrives and answers 204 at once (or after a delay). The method:

1. Delivery latency at 1,000 events/s: ingest, enrich, score, router and sync run as their own
   processes (as deployed) on a fresh database and topics (bench/pipeline.py `Stacks`), and
   realistic traffic (bench/traffic.py) is posted to ingest at 1,000 events/s for
   `BENCH_PIPELINE_S` seconds (30) after a 5 s warm-up, `BENCH_RUNS` times (3). The figure, for
   every first SDR decision whose triggering event ingest received after the warm-up: its
   arrival at the endpoint minus its `received_at` (ingest's receipt), p50/p95/p99 over every
   run's decisions; beside it, the same decisions' speed-to-lead to the router's store, so what
   sync adds shows. (Nurture decisions wait the routing's settle time by design: not counted.)
2. The same, with a second destination that answers every request after 5 s (it takes every
   event kind, 4 lanes, timeout 30 s): the first destination's p99 again. One slow destination
   must not move another's.
3. Throughput: `DELIVERIES` SDR decisions produced straight onto routing.sdr as fast as a
   producer goes, sync alone consuming them: deliveries/s from the first arrival to the last,
   one decision per request (4 lanes) and in batches of 50.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.figures import Figure
from bench.infra import REPO, BenchInfra
from bench.pipeline import RUNS, SERVICES, WARM_UP_S, Stacks, _percentile
from bench.posting import BATCH_SIZE
from bench.traffic import batch_bodies
from devstack.broker import free_port
from shared.http import HttpServer
from shared.kafka import create_producer
from shared.settings import KafkaSettings
from shared.topics import ROUTING_SDR

SECTION = "sync"
LOAD = 1000  # events/s
SLOW_ANSWER_S = 5.0
DELIVERIES = 20_000
SECRET = "whsec_" + base64.b64encode(b"leadflow bench webhook secret!!").decode()
SECRET_VARIABLE = "BENCH_WEBHOOK_SECRET"
ARRIVALS_LAG_S = 3.0  # the last decisions of a load arrive meanwhile


@dataclass
class Endpoint:
    """A webhook endpoint: when each event arrived (epoch seconds), answering after `delay_s`."""

    delay_s: float = 0.0
    port: int = field(default_factory=free_port)
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    expected: int = 0  # `all_arrived` is set once this many events arrived
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: HttpServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        async def hook(request: Request) -> Response:
            arrived = time.time()
            document = orjson.loads(await request.body())
            events = document["data"] if document["type"] == "batch" else [document]
            self.arrivals += [(arrived, event) for event in events]
            if self.expected and len(self.arrivals) >= self.expected:
                self.all_arrived.set()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            return Response(status_code=204)

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        self._server = HttpServer(
            app, host="127.0.0.1", port=self.port, setting="bench", graceful_s=1
        )
        await self._server.start()

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()


def destinations_file(destinations: dict[str, tuple[Endpoint, dict[str, Any]]]) -> Path:
    path = REPO / ".bench" / f"destinations-{uuid.uuid4().hex[:8]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "destinations": {
            name: {"url": endpoint.url, "secret_env": SECRET_VARIABLE, **fields}
            for name, (endpoint, fields) in destinations.items()
        }
    }
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


def sync_env(path: Path) -> dict[str, dict[str, str]]:
    return {"sync": {"LEADFLOW_SYNC_DESTINATIONS_FILE": str(path), SECRET_VARIABLE: SECRET}}


async def run(infra: BenchInfra) -> list[Figure]:
    seconds = float(os.environ.get("BENCH_PIPELINE_S", "30"))
    figures = await _latency(infra, seconds=seconds, with_slow=False)
    figures += await _latency(infra, seconds=seconds, with_slow=True)
    for batch_size in (1, 50):
        figures.append(await _throughput(infra, batch_size=batch_size))
    return figures


async def _latency(infra: BenchInfra, *, seconds: float, with_slow: bool) -> list[Figure]:
    """Method 1 (or 2, `with_slow`): RUNS runs at LOAD events/s; figures over every run."""
    fast, slow = Endpoint(), Endpoint(delay_s=SLOW_ANSWER_S)
    destinations: dict[str, tuple[Endpoint, dict[str, Any]]] = {
        "crm": (fast, {"events": ["decisions"], "routes": ["sdr"]})
    }
    if with_slow:
        every = ["decisions", "withdrawals", "lifecycle", "erasures"]
        destinations["slow"] = (slow, {"events": every, "concurrency": 4, "timeout_s": 30})
    path = destinations_file(destinations)
    stacks = Stacks(
        infra=infra,
        bodies=batch_bodies(seed=2, batch_size=BATCH_SIZE),
        services=(*SERVICES, "sync"),
        service_env=sync_env(path),
    )
    label = f"@ {LOAD:,} ev/s" + (
        f", another destination answering in {SLOW_ANSWER_S:g} s" if with_slow else ""
    )
    delivered: list[float] = []
    stored: list[float] = []
    p99_runs: list[float] = []
    slow_requests: list[float] = []
    await fast.start()
    await slow.start()
    try:
        for _ in range(RUNS):
            fast.arrivals.clear()
            slow.arrivals.clear()
            async with stacks.fresh() as stack:
                started = time.time()
                posted = await stack.post(rate=LOAD, seconds=WARM_UP_S + seconds)
                ended = time.time()
                await asyncio.sleep(ARRIVALS_LAG_S)
            if posted.faults():
                print(f"[bench] sync: {label}: {'; '.join(posted.faults())}", flush=True)
            run = _first_sdr_decisions(fast.arrivals, since=started + WARM_UP_S, until=ended)
            delivered += [ms for ms, _ in run]
            stored += [ms for _, ms in run]
            p99_runs.append(_percentile(sorted(ms for ms, _ in run), 0.99))
            slow_requests.append(len(slow.arrivals))
    finally:
        await fast.stop()
        await slow.stop()
        path.unlink(missing_ok=True)
    delivered.sort()
    stored.sort()
    figures = [
        Figure(SECTION, f"SDR decisions delivered {label}", len(delivered), "decisions"),
        Figure(SECTION, f"delivery p50 {label} (ingest -> CRM endpoint)", _percentile(delivered, 0.5), "ms"),
        Figure(SECTION, f"delivery p95 {label}", _percentile(delivered, 0.95), "ms"),
        Figure(SECTION, f"delivery p99 {label}", _percentile(delivered, 0.99), "ms", runs=p99_runs),
        Figure(SECTION, f"speed-to-lead p99 of the same decisions {label} (router store)",
               _percentile(stored, 0.99), "ms"),
    ]  # fmt: skip
    if with_slow:
        figures.append(
            Figure(SECTION, f"events the slow destination received {label}", sum(slow_requests),
                   "events", runs=slow_requests)
        )  # fmt: skip
    return figures


def _first_sdr_decisions(
    arrivals: list[tuple[float, dict[str, Any]]], *, since: float, until: float
) -> list[tuple[float, float]]:
    """(ms from ingest's receipt to arrival, the decision's own speed_to_lead_ms) of each first
    SDR decision (no reassignment) whose triggering event ingest received in [since, until]."""
    out = []
    for arrived, event in arrivals:
        data = event["data"]
        if event["type"] != "routing.decision" or data["route"] != "sdr" or data["supersedes"]:
            continue
        received = datetime.fromisoformat(data["received_at"]).timestamp()
        if since <= received <= until:
            out.append((1000 * (arrived - received), float(data["speed_to_lead_ms"])))
    return out


async def _throughput(infra: BenchInfra, *, batch_size: int) -> Figure:
    """Method 3: DELIVERIES decisions straight onto routing.sdr, sync alone; deliveries/s."""
    endpoint = Endpoint(expected=DELIVERIES)
    path = destinations_file(
        {"crm": (endpoint, {"events": ["decisions"], "batch_size": batch_size, "concurrency": 4})}
    )
    stacks = Stacks(infra=infra, bodies=iter(()), services=("sync",), service_env=sync_env(path))
    await endpoint.start()
    try:
        async with stacks.fresh() as stack:
            await _produce_decisions(stack.addresses.kafka_bootstrap, stack.addresses.topic_prefix)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoint.all_arrived.wait(), 300)
    finally:
        await endpoint.stop()
        path.unlink(missing_ok=True)
    times = sorted(arrived for arrived, _ in endpoint.arrivals)
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    if len(times) < DELIVERIES:
        print(f"[bench] sync: only {len(times)} of {DELIVERIES} delivered in 300 s", flush=True)
    what = "one decision per request" if batch_size == 1 else f"batches of {batch_size}"
    return Figure(SECTION, f"throughput, {what} (4 lanes)", rate, "deliveries/s")


async def _produce_decisions(bootstrap: str, prefix: str) -> None:
    example = json.loads(ROUTING_SDR.examples_file.read_text())[0]
    producer = create_producer(KafkaSettings(bootstrap_servers=bootstrap), client_id="bench-sync")
    await producer.start()
    try:
        now = datetime.now(UTC).isoformat()
        for n in range(DELIVERIES):
            lead = f"bench-lead-{n}"
            value = example | {"lead_id": lead, "decision_id": f"bench-decision-{n}",
                               "transition_id": f"{lead}:mql:1", "sequence": 1,
                               "received_at": now, "decided_at": now, "stored_at": now}  # fmt: skip
            await producer.send(
                ROUTING_SDR.full_name(prefix), orjson.dumps(value), key=lead.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
