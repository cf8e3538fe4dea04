"""Bench section `router`: what the router's handler costs per lifecycle change.

`RouterHandler` over real PostgreSQL (no broker, no consumer runner: `bench runner` measures
that), lifecycle changes in batches of 3 (what the router sees at 400 events/s: ~33 changes/s),
one transaction per batch as the runner gives it. The mix: 35% MQLs for sales (team locks,
reps' loads, round robin), the rest known/lead for nurture; half the leads change stage twice
(the second change closes the first decision). Reported as CPU per change: this process (the
handler and its statements) and the PostgreSQL cluster. CPU time, not a rate, so that other
work on the machine moves the figure less; still, run on a quiet machine.

`python -m bench router`; `BENCH_ROUTER_CHANGES` (default 3,000) sets the size.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from datetime import UTC, datetime, timedelta

import uvloop
from pydantic import SecretStr

from bench.figures import Figure, median
from bench.infra import BenchInfra
from bench.runner import postgres_cpu_s
from services.router.handler import RouterHandler
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from services.router.routing_versions import pinned
from shared.consumer import Message
from shared.contracts import Consent, LeadProfile, LifecycleChanged, Score, Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import LEADS_LIFECYCLE

SECTION = "router"
BATCH = 3
WARM_UP = 300
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def changes(count: int, *, seed: int) -> list[Message[LifecycleChanged]]:
    rng = random.Random(seed)
    at = datetime.now(UTC)
    messages = []
    for n in range(count):
        lead = f"lead-{seed}-{rng.randint(1, count // 2)}"
        to_stage = Stage.MQL if rng.random() < 0.35 else rng.choice([Stage.KNOWN, Stage.LEAD])
        change = LifecycleChanged(
            transition_id=f"{lead}:{to_stage.value}:m-{n}",
            lead_id=lead,
            from_stage=Stage.ANONYMOUS,
            to_stage=to_stage,
            reason="bench",
            at=at,
            received_at=at,
            profile=LeadProfile(
                email=f"{lead}@corp{rng.randint(1, 50)}.example",
                first_name="Lee",
                title="VP Sales",
                country=rng.choice(["FR", "US", "DE", "GB"]),
            ),
            consent=Consent(),
            score=Score(fit=30, behaviour=60, total=90, grade="A", band=1, priority="A1"),
        )
        messages.append(
            Message(topic=LEADS_LIFECYCLE, partition=0, offset=n, key=None, value=change)
        )
    return messages


async def one_run(infra: BenchInfra, count: int, *, seed: int) -> tuple[float, float]:
    """(router CPU us per change, PostgreSQL CPU us per change) of one run."""
    url = await infra.fresh_database()
    engine = create_engine(DatabaseSettings(url=SecretStr(url)), application_name="bench-router")
    sessions = create_sessionmaker(engine)
    handler = RouterHandler(
        pinned(load_routing(DEFAULT_ROUTING_FILE)),
        sla_recheck=timedelta(minutes=5),
        backfill_horizon=timedelta(hours=72),
    )
    messages = changes(count + WARM_UP, seed=seed)
    try:
        for i in range(0, WARM_UP, BATCH):
            async with unit_of_work(sessions) as session:
                await handler(messages[i : i + BATCH], session)
        cpu, pg_cpu = time.process_time(), postgres_cpu_s(infra)
        for i in range(WARM_UP, len(messages), BATCH):
            async with unit_of_work(sessions) as session:
                await handler(messages[i : i + BATCH], session)
        cpu, pg_cpu = time.process_time() - cpu, postgres_cpu_s(infra) - pg_cpu
    finally:
        await engine.dispose()
    return cpu / count * 1e6, pg_cpu / count * 1e6


async def run(infra: BenchInfra) -> list[Figure]:
    count = int(os.environ.get("BENCH_ROUTER_CHANGES", "3000"))
    # On uvloop, as the services run (shared.service), in a thread with its own event loop.
    runs = [
        await asyncio.to_thread(uvloop.run, one_run(infra, count, seed=seed))
        for seed in range(RUNS)
    ]
    for i, (cpu, pg) in enumerate(runs):
        print(f"[bench] router run {i}: {cpu:.0f} us/change, postgres {pg:.0f} us")
    return [
        Figure(
            SECTION,
            f"router handler CPU per lifecycle change (batches of {BATCH})",
            median([r[0] for r in runs]),
            "us",
        ),
        Figure(SECTION, "PostgreSQL CPU per lifecycle change", median([r[1] for r in runs]), "us"),
    ]
