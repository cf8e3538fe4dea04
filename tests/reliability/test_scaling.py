"""Two instances of each consumer in one group under load; SIGKILL one of each: the survivors
take over every partition, and nothing is lost or counted twice."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import asyncpg
import pytest

from tests.fixtures.infra import PARTITIONS
from tests.fixtures.load import SegmentLoad
from tests.fixtures.pipeline import WRITE_KEY, Pipeline, PipelineFactory
from tests.reliability.accounting import account, wait_until_drained

CONSUMERS = {
    "enrich": ("events.raw", "enrich.commands"),
    "score": ("events.enriched", "crm.feedback", "score.commands"),
    "router": ("leads.lifecycle",),
}
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


@pytest.mark.timeout(600)
async def test_a_killed_instance_hands_its_partitions_to_the_survivor(
    pipeline_factory: PipelineFactory, db: asyncpg.Connection
) -> None:
    first, second = pipeline_factory(), pipeline_factory()
    await first.start("ingest", "enrich", "score", "router")
    await second.start("enrich", "score", "router")
    everything = {
        service: {(f"{first.prefix}{t}", p) for t in topics for p in range(PARTITIONS)}
        for service, topics in CONSUMERS.items()
    }
    load = SegmentLoad(ingest_url=first.ingest_url, write_key=WRITE_KEY, batches_per_s=5)
    traffic = asyncio.create_task(load.run())
    await asyncio.sleep(8)  # both instances of each consumer share the partitions by now
    for service in CONSUMERS:
        log_file = second.processes[service].log_file
        assert log_file is not None
        shares = assignments(log_file)
        assert shares, f"{second.logs()}"
        assert set() < shares[-1] < everything[service], f"{service} did not share: {shares}"

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
    assert (counts.lost, counts.duplicates, counts.enrich_missing) == (0, 0, 0), second.logs()
    assert counts.processed == counts.acknowledged > 0
    assert counts.acknowledged_mql_not_mql == 0
    assert counts.leads_without_one_decision == 0
    assert counts.sdr_decisions == counts.mql_leads >= len(report.acknowledged_mql_users) > 0
    assert counts.dead_letters == 0
