"""Chaos under steady load: SIGKILL each service in turn and two at once, restart them, stop
PostgreSQL for 30 s and bring it back. After the load drains, every event ingest acknowledged is
scored exactly once, every lead that crossed MQL has exactly one SDR decision, and the
dead-letter topics are empty (the load sends nothing invalid).

The broker itself is never restarted: the development broker keeps topics in memory only
(docs/architecture.md, "Infrastructure"). Killing a service drops its broker connections;
the restart opens new ones.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tests.fixtures.load import SegmentLoad
from tests.fixtures.outage import RestartablePostgres
from tests.fixtures.pipeline import WRITE_KEY, Pipeline
from tests.reliability.accounting import account, wait_until_drained

SERVICES = ("ingest", "enrich", "score", "router")
POSTGRES_OUTAGE_S = 30


async def restart(pipeline: Pipeline, *services: str) -> None:
    """SIGKILL (no drain, no offset commit), then start again and wait until ready."""
    for service in services:
        pipeline.kill(service)
    await asyncio.sleep(1)
    await pipeline.start(*services)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kills_and_a_database_outage_lose_nothing_and_double_nothing(
    outage_pipeline: Pipeline, restartable_postgres: RestartablePostgres
) -> None:
    pipeline = outage_pipeline
    began = time.monotonic()
    await pipeline.start(*SERVICES)
    load = SegmentLoad(ingest_url=pipeline.ingest_url, write_key=WRITE_KEY, batches_per_s=5)
    traffic = asyncio.create_task(load.run())
    await asyncio.sleep(5)

    for service in SERVICES:
        await restart(pipeline, service)
        await asyncio.sleep(4)
    await restart(pipeline, "enrich", "score")
    await asyncio.sleep(4)
    await restart(pipeline, "ingest", "router")
    await asyncio.sleep(4)

    await asyncio.to_thread(restartable_postgres.stop)
    await asyncio.sleep(POSTGRES_OUTAGE_S)
    await asyncio.to_thread(restartable_postgres.start)
    await asyncio.sleep(5)
    # The consumers rode the outage out (backoff, no commit past it): none exited.
    exited = {
        name: p.process.returncode
        for name, p in pipeline.processes.items()
        if p.process is not None and p.process.poll() is not None
    }
    assert exited == {}, pipeline.logs()

    load.stop()
    report = await traffic
    db = await asyncpg.connect(restartable_postgres.database_url.replace("+asyncpg", ""))
    try:
        await wait_until_drained(db, report)
        counts = await account(db, pipeline, report)
        print()
        print(
            counts.table(
                f"chaos run: {report.batches} batches in {time.monotonic() - began:.0f}s, "
                f"HTTP {dict(report.statuses)}"
            )
        )
        # Each buyer scored the same: nothing counted twice. See tests/fixtures/load.py.
        buyer_scores = await db.fetch(
            """
            SELECT DISTINCT l.fit, l.behaviour, l.stage FROM score.leads l
            JOIN enrich.identities i ON i.lead_id = l.lead_id
            WHERE i.kind = 'user_id' AND i.value = ANY($1)
            """,
            sorted(report.acknowledged_mql_users),
        )
        # Visitors who identified had their anonymous history stitched (merged) under chaos too.
        stitched = await db.fetchval("SELECT count(*) FROM enrich.merges")
    finally:
        await db.close()

    assert report.statuses["200"] > 0.8 * report.batches  # the load really ran through the chaos
    assert counts.acknowledged > 0
    assert (counts.lost, counts.duplicates, counts.enrich_missing) == (0, 0, 0), (
        "\n".join(counts.duplicate_rows) + pipeline.logs()
    )
    assert counts.processed == counts.acknowledged
    assert counts.acknowledged_mql_not_mql == 0
    assert counts.mql_leads >= len(report.acknowledged_mql_users) > 0
    assert counts.leads_without_one_decision == 0
    assert counts.sdr_decisions == counts.mql_leads
    assert counts.dead_letters == 0
    assert [tuple(r) for r in buyer_scores] == [(80, 60, "mql")]
    assert stitched > 0
