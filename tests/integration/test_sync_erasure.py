"""An erasure notice deletes what sync keeps about the person's leads (queued deliveries, dead
letters, held routing events: their payloads name her), reaches the destinations that take
erasures, is reported on `privacy.reports`, and later messages about her leads are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx

from shared.topics import PRIVACY_ERASURES, PRIVACY_REPORTS, ROUTING_WITHDRAWALS
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.webhooks import (
    Answer,
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

ADA, BOB = "lead-ada", "lead-bob"


async def test_an_erasure_deletes_the_leads_queued_deliveries_and_reports(
    pipeline: Pipeline,
    db: asyncpg.Connection,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    crm, strict = await receivers(), await receivers()
    crm.answer = lambda: Answer(503)  # down: everything waits in its queue
    strict.answer = lambda: Answer(422)  # refuses: everything goes to its dead letters
    await start_sync(pipeline, tmp_path, {
        "crm": (crm, {"events": ["decisions", "withdrawals", "erasures"], "max_attempts": 1000,
                      "backoff_base_s": 0.5, "backoff_cap_s": 1}),
        "strict": (strict, {"events": ["decisions"]}),
    }, REORDER_WAIT_S="60")  # fmt: skip
    produce(
        pipeline,
        [
            (decision_topic("sdr"), ADA, decision(ADA, 1)),
            (decision_topic("sdr"), BOB, decision(BOB, 1)),
            # Ada's 3 waits for her 2, which never comes (held, with her email in it)
            (ROUTING_WITHDRAWALS, ADA, withdrawal(ADA, 3, replaced_by=None)),
        ],
    )

    def rows(table: str, lead: str) -> Callable[[], Awaitable[int]]:
        sql = {
            "deliveries": "SELECT count(*) FROM sync.deliveries WHERE lead_id = $1",
            "dead_letters": "SELECT count(*) FROM sync.dead_letters WHERE lead_id = $1",
            "held": "SELECT count(*) FROM sync.lead_order WHERE lead_id = $1 AND held <> '[]'",
        }[table]
        return lambda: count(db, sql, lead)

    for table in ("deliveries", "dead_letters", "held"):
        await eventually(rows(table, ADA), f"Ada's {table}", timeout_s=10)
    assert await rows("deliveries", BOB)() == 1

    produce(pipeline, [(PRIVACY_ERASURES, "erase-ada", erasure("erase-ada", [ADA]))])
    reports = await pipeline.read(
        PRIVACY_REPORTS.full_name(pipeline.prefix),
        until=lambda records: any(r.json()["service"] == "sync" for r in records),
    )
    (report,) = [r.json() for r in reports if r.json()["service"] == "sync"]
    assert report["request_id"] == "erase-ada"
    assert report["erased"] == {"deliveries": 1, "dead_letters": 1, "lead_order": 1}
    for table in ("deliveries", "dead_letters", "held"):
        assert await rows(table, ADA)() == (1 if table == "deliveries" else 0), table
    (left,) = await db.fetch(
        "SELECT destination, event_kind FROM sync.deliveries WHERE lead_id = $1", ADA
    )
    assert (left["destination"], left["event_kind"]) == ("crm", "erasures")  # the notice itself
    assert await rows("deliveries", BOB)() == 1
    assert await rows("dead_letters", BOB)() == 1

    # A late decision about Ada is dropped and counted; the destination, back, gets Bob's
    # decision and the notice, nothing of Ada's.
    produce(pipeline, [(decision_topic("sdr"), ADA, decision(ADA, 4))])

    async def dropped() -> str:
        async with httpx.AsyncClient() as client:
            metrics = await client.get(pipeline.addresses.health_url("sync", "/metrics"))
        return metrics.text

    await eventually(
        dropped,
        "the late decision dropped",
        until=lambda text: (
            'erased_lead_messages_dropped_total{type="routing.decision"} 1.0' in text
        ),
        timeout_s=10,
    )
    crm.answer = Answer
    await eventually(polled(lambda: len(crm.delivered)), "Bob's decision and the notice",
                     until=lambda n: n >= 2, timeout_s=10)  # fmt: skip
    await asyncio.sleep(0.5)
    assert sorted((r.event["type"], r.lead_id) for r in crm.delivered) == [
        ("privacy.erasure", ADA),
        ("routing.decision", BOB),
    ]
    assert await rows("deliveries", ADA)() == 0
