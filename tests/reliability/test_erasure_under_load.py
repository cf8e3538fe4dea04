"""An erasure while the pipeline carries steady traffic from other people: the person is gone
from every store as in tests/integration/test_privacy_erasure.py, and nothing of anybody else is
lost or counted twice (the erasure closes enrich's do-not-track gate and locks leads in every
service while their consumers keep going)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.fixtures.load import SegmentLoad
from tests.fixtures.pipeline import WRITE_KEY, Pipeline
from tests.fixtures.privacy import SERVICES, erase_a_person_and_prove_it
from tests.reliability.accounting import account, wait_until_drained


@pytest.mark.slow  # about 35 s: `make test-slow` (the story without load is in `make test`)
async def test_an_erasure_under_load_loses_nothing_of_anybody_else(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start(*SERVICES)
    load = SegmentLoad(ingest_url=pipeline.ingest_url, write_key=WRITE_KEY, batches_per_s=5)
    traffic = asyncio.create_task(load.run())
    await asyncio.sleep(3)  # the load is flowing before she arrives

    erased = await erase_a_person_and_prove_it(pipeline, db)

    load.stop()
    report = await traffic
    await wait_until_drained(db, report)
    accounting = await account(db, pipeline, report, erased=frozenset(erased))
    assert report.batches > 20, report
    assert accounting.acknowledged == accounting.sent, accounting.table("erasure under load")
    assert (accounting.lost, accounting.duplicates, accounting.dead_letters) == (0, 0, 0), (
        accounting.table("erasure under load")
    )
    assert accounting.leads_without_one_decision == 0, accounting.table("erasure under load")
