"""A destination that is down, or slow, costs only itself: sync keeps consuming, the others keep
receiving, and once it answers again it gets everything, each lead's events in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest

from shared.topics import LEADS_LIFECYCLE
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.webhooks import (
    Answer,
    Receiver,
    count,
    decision,
    decision_topic,
    polled,
    produce,
    start_sync,
)
from tests.unit.builders import lifecycle_change

LEADS = [f"lead-{n}" for n in range(8)]
ROUNDS = 10


async def test_a_destination_down_for_a_while_gets_everything_in_order_when_it_is_back(
    pipeline: Pipeline,
    db: asyncpg.Connection,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    crm = await receivers()
    crm.answer = lambda: Answer(503, {"Retry-After": "1"})
    retried_quickly = {"max_attempts": 1000, "backoff_base_s": 0.1, "backoff_cap_s": 0.5}
    await start_sync(pipeline, tmp_path,
                     {"crm": (crm, {"concurrency": 2, "batch_size": 3, **retried_quickly})})  # fmt: skip

    # Steady production: every half second, each lead's next decision (sdr and nurture in turn).
    for sequence in range(1, ROUNDS + 1):
        route = "sdr" if sequence % 2 else "nurture"
        produce(pipeline, [(decision_topic(route), lead, decision(lead, sequence, route=route))
                           for lead in LEADS])  # fmt: skip
        if sequence == ROUNDS // 2:  # half way: from 503s to refused connections
            attempts = crm.attempts
            assert attempts > 0
            await crm.go_down()
        await asyncio.sleep(0.5)
    # The consumer never waited for the destination: everything is queued, and retried.
    await eventually(
        lambda: count(db, "SELECT count(*) FROM sync.deliveries"),
        "every event queued while the destination is down",
        until=lambda queued: queued == ROUNDS * len(LEADS),
        timeout_s=10,
    )
    assert await count(db, "SELECT count(*) FROM sync.deliveries WHERE attempts > 0") > 0
    assert crm.delivered == []

    crm.answer = Answer
    await crm.come_back()
    await eventually(polled(lambda: len(crm.ids())), "every event delivered once back",
                     until=lambda n: n == ROUNDS * len(LEADS), timeout_s=15)  # fmt: skip
    assert crm.refused_signatures == []
    for lead, events in crm.by_lead().items():
        sequences = [e.event["data"]["sequence"] for e in events]
        assert sequences == list(range(1, ROUNDS + 1)), lead
    assert await count(db, "SELECT count(*) FROM sync.dead_letters") == 0
    assert await count(db, "SELECT count(*) FROM sync.deliveries") == 0
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(pipeline.addresses.health_url("sync", "/metrics"))).text
    assert 'leadflow_sync_paused_total{destination="crm"}' in metrics  # Retry-After honoured
    assert 'leadflow_sync_failed_attempts_total{cause="503",destination="crm"}' in metrics
    assert 'leadflow_sync_failed_attempts_total{cause="connection",destination="crm"}' in metrics


@pytest.mark.slow  # about 12 s: `make test-slow` (make test stays within 20 minutes)
async def test_a_slow_destination_does_not_delay_another(
    pipeline: Pipeline,
    db: asyncpg.Connection,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    fast, slow = await receivers(), await receivers()
    slow.answer = lambda: Answer(delay_s=5)
    await start_sync(
        pipeline,
        tmp_path,
        {"fast": (fast, {}), "slow": (slow, {"concurrency": 2, "timeout_s": 30})},
    )
    changes = [
        lifecycle_change(lead_id=lead, transition_id=f"{lead}:{stage}", to_stage=stage)
        for lead in LEADS
        for stage in ("mql", "sql")
    ]
    produce(pipeline, [(LEADS_LIFECYCLE, change.lead_id, change) for change in changes])

    await eventually(polled(lambda: len(fast.ids())), "every event at the fast destination",
                     until=lambda n: n == len(changes), timeout_s=10)  # fmt: skip
    # ... while the slow one is still on its first requests (5 s each, two lanes).
    assert slow.in_flight > 0
    assert len(slow.delivered) < len(changes)
    assert (
        await count(db, "SELECT count(*) FROM sync.deliveries WHERE destination = 'slow'")
        > len(changes) - 4
    )
