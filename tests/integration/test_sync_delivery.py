"""sync delivers what the topics carry to a real HTTP destination: signed (Standard Webhooks),
with idempotency keys, a lead's routing events in sequence order across the three routing
topics, whatever order they arrive in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from shared.topics import LEADS_LIFECYCLE, PRIVACY_ERASURES, PRIVACY_REPORTS, ROUTING_WITHDRAWALS
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.webhooks import (
    Receiver,
    count,
    decision,
    decision_topic,
    erasure,
    polled,
    produce,
    start_sync,
    withdrawal,
)
from tests.unit.builders import lifecycle_change

LEADS = [f"lead-{n}" for n in range(6)]


async def test_every_event_arrives_signed_in_sequence_order_with_its_idempotency_key(
    pipeline: Pipeline,
    db: asyncpg.Connection,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    crm = await receivers()
    await start_sync(pipeline, tmp_path, {"crm": (crm, {"concurrency": 3})})

    # Each lead: a stage change, then decision 1 (sdr), its withdrawal 2, decision 3 (nurture).
    # The withdrawals come first, a batch of their own: each waits for its decision.
    produce(pipeline, [(ROUTING_WITHDRAWALS, lead, withdrawal(lead, 2, replaced_by=f"decision-{lead}-3"))
                       for lead in LEADS])  # fmt: skip
    await asyncio.sleep(1.0)
    produce(pipeline, [(decision_topic("nurture"), lead, decision(lead, 3, route="nurture"))
                       for lead in LEADS])  # fmt: skip
    produce(
        pipeline,
        [
            (LEADS_LIFECYCLE, lead, lifecycle_change(lead_id=lead, transition_id=f"{lead}:mql"))
            for lead in LEADS
        ]
        + [(decision_topic("sdr"), lead, decision(lead, 1)) for lead in LEADS],
    )

    await eventually(polled(lambda: len(crm.delivered)), "24 events delivered",
                     until=lambda n: n >= 4 * len(LEADS), timeout_s=20)  # fmt: skip
    assert crm.refused_signatures == []
    routing = crm.by_lead()
    for lead in LEADS:
        events = routing[lead]
        assert [e.event["type"] for e in events if e.event["type"] != "lead.lifecycle"] == [
            "routing.decision",
            "routing.withdrawal",
            "routing.decision",
        ], lead
        assert [e.event["data"]["sequence"] for e in events if "sequence" in e.event["data"]] == [
            1,
            2,
            3,
        ]
    for received in crm.delivered:
        data = received.event["data"]
        key = {
            "routing.decision": "decision_id",
            "routing.withdrawal": "withdrawal_id",
            "lead.lifecycle": "transition_id",
        }[received.event["type"]]
        assert received.idempotency_key == received.webhook_id == received.event["id"] == data[key]
    assert len(crm.ids()) == 4 * len(LEADS)  # each once
    assert await count(db, "SELECT count(*) FROM sync.deliveries") == 0

    # An erasure notice reaches the destination too, and sync reports its part.
    produce(pipeline, [(PRIVACY_ERASURES, "erasure-1", erasure("erasure-1", [LEADS[0]]))])
    notices = await eventually(
        polled(lambda: crm.by_lead("privacy.erasure").get(LEADS[0], [])), "the erasure notice"
    )
    assert notices[0].idempotency_key == "erasure-1"
    reports = await pipeline.read(
        PRIVACY_REPORTS.full_name(pipeline.prefix),
        until=lambda records: any(r.json()["service"] == "sync" for r in records),
    )
    assert [r.json()["request_id"] for r in reports if r.json()["service"] == "sync"] == [
        "erasure-1"
    ]

    # The operator's view and the metrics, without the URL's query or any secret.
    shown = await asyncio.to_thread(pipeline.processes["sync"].run_to_end, "destinations", "--json")
    assert '"delivered_total": 25' in shown
    assert "in-the-query" not in shown
    assert crm.secret not in shown
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(pipeline.addresses.health_url("sync", "/metrics"))).text
    assert (
        'leadflow_sync_delivered_total{destination="crm",type="routing.decision"} 12.0' in metrics
    )
    # the withdrawals, a batch ahead of their decisions, were held for them (and the nurture
    # decisions too, when they came in a batch of their own)
    (held,) = [
        line
        for line in metrics.splitlines()
        if line.startswith("leadflow_sync_reorder_held_total ")
    ]
    assert float(held.split()[1]) >= len(LEADS)


async def test_a_decision_queued_wakes_its_lane_at_once_not_at_its_next_poll(
    pipeline: Pipeline,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    """The statement that queues a delivery notifies its lane (NOTIFY at commit): with lanes
    that would otherwise look only every 10 s, a decision arrives within a few."""
    crm = await receivers()
    await start_sync(pipeline, tmp_path, {"crm": (crm, {})}, IDLE_POLL_S="10")
    await asyncio.sleep(2)  # every lane has looked once and found nothing: idle for 10 s now

    started = asyncio.get_running_loop().time()
    produce(pipeline, [(decision_topic("sdr"), "lead-woken", decision("lead-woken", 1))])
    await eventually(polled(lambda: len(crm.delivered)), "the decision delivered",
                     until=lambda n: n >= 1, timeout_s=10)  # fmt: skip

    assert asyncio.get_running_loop().time() - started < 5
    assert crm.delivered[0].event["data"]["lead_id"] == "lead-woken"
