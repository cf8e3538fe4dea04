"""Two instances of each consumer in one group under load, with merges (returning visitors
stitched to known people); SIGKILL one of each: the survivors take over every partition, and
nothing is lost or counted twice, merged leads' events included. And two score instances
folding merges while the merged leads' own events are scored next door."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.infra import PARTITIONS
from tests.fixtures.load import SegmentLoad
from tests.fixtures.pipeline import WRITE_KEY, Pipeline, PipelineFactory
from tests.reliability.accounting import account, wait_until_drained
from tests.reliability.subscriptions import subscriptions

CONSUMERS = subscriptions()
_ASSIGNED = re.compile(r" assigned \[(.*)\]$", re.MULTILINE)
_PARTITION = re.compile(r"\('([^']+)', (\d+)\)")


def assignments(log_file: Path) -> list[set[tuple[str, int]]]:
    """Every assignment the runner logged, in order (`assigned [(topic, partition), ...]`)."""
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    return [
        {(topic, int(p)) for topic, p in _PARTITION.findall(found)}
        for found in _ASSIGNED.findall(text)
    ]


async def wait_for_assignment(
    pipeline: Pipeline, service: str, expected: set[tuple[str, int]], timeout_s: float = 60
) -> list[set[tuple[str, int]]]:
    log_file = pipeline.processes[service].log_file
    assert log_file is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = assignments(log_file)
        if seen and seen[-1] == expected:
            return seen
        await asyncio.sleep(0.5)
    raise AssertionError(f"{service}: last assignment {assignments(log_file)[-1:]}, not {expected}")


@pytest.mark.slow  # about 45 s: `make test-slow` and `make test-reliability`
@pytest.mark.timeout(600)
async def test_a_killed_instance_hands_its_partitions_to_the_survivor(
    pipeline_factory: PipelineFactory, db: asyncpg.Connection
) -> None:
    first, second = pipeline_factory(), pipeline_factory()
    await first.start("ingest", "enrich", "score", "router")
    await second.start("enrich", "score", "router")
    everything = {
        service: {(t.full_name(first.prefix), p) for t in topics for p in range(PARTITIONS)}
        for service, topics in CONSUMERS.items()
    }
    # With merges (stitch_every's default): enrich merges returning visitors into known
    # people and score folds them while instances die and partitions move.
    load = SegmentLoad(ingest_url=first.ingest_url, write_key=WRITE_KEY, batches_per_s=5)
    traffic = asyncio.create_task(load.run())
    await asyncio.sleep(8)  # both instances of each consumer share the partitions by now
    for service in CONSUMERS:
        log_file = second.processes[service].log_file
        assert log_file is not None
        shares = assignments(log_file)
        assert shares, f"{second.logs()}"
        assert set() < shares[-1] < everything[service], f"{service} did not share: {shares}"

    killed_at = await db.fetchval("SELECT now()")
    for service in CONSUMERS:
        first.kill(service)  # SIGKILL: no drain, no commit, no leave-group
    for service in CONSUMERS:
        await wait_for_assignment(second, service, everything[service])
    await asyncio.sleep(5)
    load.stop()
    report = await traffic

    await wait_until_drained(db, report)
    counts = await account(db, second, report)
    print()
    print(counts.table(f"scaling: {report.batches} batches, HTTP {dict(report.statuses)}"))
    assert report.statuses["200"] == report.batches
    assert (counts.lost, counts.duplicates, counts.enrich_missing) == (0, 0, 0), (
        "\n".join(counts.duplicate_rows) + second.logs()
    )
    assert counts.processed == counts.acknowledged > 0
    assert counts.acknowledged_mql_not_mql == 0
    assert counts.leads_without_one_decision == 0
    assert counts.sdr_decisions == counts.mql_leads >= len(report.acknowledged_mql_users) > 0
    assert counts.dead_letters == 0
    # Merges ran on both sides of the takeover, and score folded each one exactly: the merged
    # lead is marked as the survivor's and keeps no history or ledger row of its own (its
    # events count once, under the survivor: the accounting above).
    merges = await db.fetch(
        "SELECT merged_lead_id, surviving_lead_id, merged_at > $1 AS after_kill "
        "FROM enrich.merges WHERE unmerged_at IS NULL",
        killed_at,
    )
    after_kill = sum(1 for m in merges if m["after_kill"])
    assert 0 < after_kill < len(merges), f"{after_kill} of {len(merges)} merges after the kill"
    merged = {m["merged_lead_id"]: m["surviving_lead_id"] for m in merges}
    marked = await db.fetch(
        "SELECT lead_id, merged_into FROM score.leads WHERE lead_id = ANY($1)", sorted(merged)
    )
    assert {r["lead_id"]: r["merged_into"] for r in marked} == merged
    # No points are left on a merged lead. Only an absorbed anonymous visitor keeps its history
    # rows (inert while merged, for an unmerge to give back); a known lead's moved to the survivor.
    leftovers = await db.fetchval(
        "SELECT (SELECT count(*) FROM score.ledger WHERE lead_id = ANY($1))"
        " + (SELECT count(*) FROM score.history AS item"
        "    JOIN enrich.merges AS merge ON merge.merged_lead_id = item.lead_id"
        "    WHERE item.lead_id = ANY($1) AND NOT merge.history_replayed)",
        sorted(merged),
    )
    assert leftovers == 0, "merged leads still hold rows of their own"


PAIRS = 40


@pytest.mark.slow  # about 15 s: `make test-slow` (make test stays within 20 minutes)
@pytest.mark.timeout(300)
async def test_two_score_instances_count_a_merged_visitors_events_once(
    pipeline_factory: PipelineFactory, db: asyncpg.Connection
) -> None:
    """Known people come back on another device: in one batch each new visitor's first page
    view and the identify that merges the visitor into the person. The page view is scored on
    the visitor's partition, the merge folded on the person's: with two score instances, by
    different processes at the same time."""
    first, second = pipeline_factory(), pipeline_factory()
    await first.start("ingest", "enrich", "score")
    await second.start("score")
    run = uuid.uuid4().hex[:6]
    people = [f"p-{run}-{i}" for i in range(PAIRS)]
    identifies = [
        {"type": "identify", "userId": p, "traits": {"email": f"{p}@initech.com"}} for p in people
    ]
    assert (await first.post("/v1/batch", {"batch": identifies})).status_code == 200
    await _wait_for(db, "SELECT count(*) FROM score.leads WHERE identified", PAIRS)

    calls: list[dict[str, object]] = []
    for i, person in enumerate(people):
        visitor, page = f"v-{run}-{i}", f"m-{run}-{i}"
        calls += [
            {"type": "page", "anonymousId": visitor, "name": "/pricing", "messageId": page},
            {"type": "identify", "anonymousId": visitor, "userId": person},
        ]
    assert (await first.post("/v1/batch", {"batch": calls})).status_code == 200
    pages = [f"m-{run}-{i}" for i in range(PAIRS)]
    await _wait_for(
        db,
        "SELECT count(DISTINCT message_id) FROM score.history WHERE message_id LIKE 'm-%'",
        PAIRS,
    )
    await asyncio.sleep(3)  # let both instances finish what they hold

    scored = await db.fetch(
        # rows of live leads: a merged anonymous lead keeps its own rows, inert, for an unmerge
        "SELECT item.message_id, count(*) AS n FROM score.history AS item"
        " LEFT JOIN score.leads AS lead USING (lead_id)"
        " WHERE item.message_id = ANY($1) AND lead.merged_into IS NULL GROUP BY item.message_id",
        pages,
    )
    twice = sorted(r["message_id"] for r in scored if r["n"] > 1)
    zombies = await db.fetchval(
        "SELECT count(*) FROM score.leads WHERE stage = 'anonymous' AND merged_into IS NULL"
    )
    assert (twice, zombies) == ([], 0), f"{len(twice)} of {PAIRS} page views scored twice"


async def _wait_for(
    db: asyncpg.Connection, query: str, expected: int, timeout_s: float = 90
) -> None:
    deadline = time.monotonic() + timeout_s
    while await db.fetchval(query) < expected:
        assert time.monotonic() < deadline, f"{query}: not {expected} after {timeout_s}s"
        await asyncio.sleep(0.5)
