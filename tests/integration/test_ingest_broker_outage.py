"""With the broker gone, ingest says 503 (never a false 200) and recovers by itself."""

from __future__ import annotations

import asyncio
import time

import pytest

from devstack.broker import LocalBroker, free_port
from tests.fixtures.pipeline import PipelineFactory

EVENT = {"anonymousId": "anon-outage", "event": "Pricing Viewed"}


@pytest.mark.slow  # about 18 s: `make test-slow` (make test stays within 20 minutes)
async def test_ingest_answers_503_while_the_broker_is_down_and_recovers(
    pipeline_factory: PipelineFactory,
) -> None:
    broker = LocalBroker(port=free_port())
    broker.start()
    try:
        pipeline = pipeline_factory(kafka_bootstrap=broker.bootstrap_servers)
        await pipeline.start("ingest")
        assert (await pipeline.post("/v1/track", EVENT)).status_code == 200

        broker.stop()
        down = await pipeline.post("/v1/track", EVENT)
        assert down.status_code == 503
        assert int(down.headers["Retry-After"]) > 0
        assert down.json()["success"] is False

        broker.start()
        deadline = time.monotonic() + 60
        statuses = []
        while time.monotonic() < deadline:
            statuses.append((await pipeline.post("/v1/track", EVENT)).status_code)
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.5)
        assert statuses[-1] == 200, f"ingest did not recover: {statuses}{pipeline.logs()}"
        assert set(statuses) <= {200, 503}  # never a 500 on the way back
    finally:
        broker.stop()
