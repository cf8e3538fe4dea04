"""SIGKILL a consumer mid-stream and restart it: no event lost, none counted twice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from shared.topics import ROUTING_SDR
from tests.fixtures.pipeline import Pipeline

LEADS = 40


async def post_leads(pipeline: Pipeline, statuses: list[int]) -> None:
    for i in range(LEADS):
        user = f"u-crash-{i}"
        calls: list[tuple[str, dict[str, Any]]] = [
            (
                "/v1/identify",
                {
                    "userId": user,
                    "traits": {"email": f"buyer{i}@initech.com", "title": "Director of IT"},
                },
            ),
            ("/v1/track", {"userId": user, "event": "Demo Requested"}),
            ("/v1/track", {"userId": user, "event": "Webinar Attended"}),
        ]
        for path, body in calls:
            statuses.append((await pipeline.post(path, body)).status_code)
        await asyncio.sleep(0.25)


async def wait_for(db: asyncpg.Connection, query: str, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    value = await db.fetchval(query)
    while value != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        value = await db.fetchval(query)
    return int(value)


@pytest.mark.slow  # about 55 s: `make test-slow` (make test stays within 20 minutes)
async def test_killed_consumers_lose_nothing_and_double_count_nothing(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    statuses: list[int] = []
    traffic = asyncio.create_task(post_leads(pipeline, statuses))
    for service in ("enrich", "score", "router"):
        await asyncio.sleep(2.5)
        pipeline.kill(service)  # SIGKILL: no drain, no offset commit
        await pipeline.start(service)
    await traffic
    assert statuses == [200] * (3 * LEADS)

    decided = await wait_for(
        db, "SELECT count(*) FROM router.decisions WHERE route = 'sdr'", LEADS, timeout_s=120
    )
    assert decided == LEADS, pipeline.logs()

    # enrich: every accepted call attributed once, one lead per person.
    assert await db.fetchval("SELECT count(*) FROM enrich.seen_messages") == 3 * LEADS
    assert await db.fetchval("SELECT count(*) FROM enrich.leads") == LEADS
    # score: each lead has exactly its points under the default rules: fit 20 (director) + 5 (IT)
    # + 15 (Initech: 450 employees) + 15 (software) + 5 (revenue) + 5 (US), behaviour 60 (demo)
    # + 20 (webinar); the ledger holds each point once.
    scores = await db.fetch("SELECT fit, behaviour, stage FROM score.leads")
    assert sorted({(r["fit"], r["behaviour"], r["stage"]) for r in scores}) == [(65, 80, "mql")]
    assert len(scores) == LEADS
    assert await db.fetchval("SELECT count(*) FROM score.ledger") == 8 * LEADS
    assert await db.fetchval("SELECT sum(points) FROM score.ledger") == 145 * LEADS
    assert await db.fetchval("SELECT count(*) FROM score.history") == 3 * LEADS
    # router: one sdr decision per lead, and the topic carries exactly that decision per lead.
    per_lead = await db.fetch(
        "SELECT lead_id, count(*) AS n FROM router.decisions WHERE route = 'sdr' GROUP BY lead_id"
    )
    assert {r["n"] for r in per_lead} == {1}
    records = await pipeline.read_all(ROUTING_SDR.full_name(pipeline.prefix))
    decision_ids = {(r.json()["lead_id"], r.json()["decision_id"]) for r in records}
    assert len(decision_ids) == LEADS
    assert len({lead for lead, _ in decision_ids}) == LEADS
