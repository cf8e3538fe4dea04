"""The benchmark's load generator against a real HTTP server: a refused batch and a load the
server cannot take at its pace are counted, so the step they belong to fails
(bench/posting.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request, Response

from bench.posting import BATCH_SIZE, IN_FLIGHT, post
from devstack.broker import free_port
from shared.http import HttpServer


class Ingest:
    """A stand-in for ingest's `/v1/batch`: refuses every `refuse_every`-th batch with 503 and
    answers after `delay_s`."""

    def __init__(self, *, refuse_every: int = 0, delay_s: float = 0.0) -> None:
        self.refuse_every, self.delay_s = refuse_every, delay_s
        self.received = 0
        self.app = FastAPI()
        self.app.post("/v1/batch")(self.batch)

    async def batch(self, request: Request) -> Response:
        await request.body()
        self.received += 1
        await asyncio.sleep(self.delay_s)
        if self.refuse_every and self.received % self.refuse_every == 0:
            return Response(status_code=503)
        return Response(content=b'{"success": true}', media_type="application/json")


@pytest.fixture
async def serve() -> AsyncIterator[list[HttpServer]]:
    servers: list[HttpServer] = []
    yield servers
    for server in servers:
        await server.stop()


async def start(ingest: Ingest, servers: list[HttpServer]) -> int:
    port = free_port()
    server = HttpServer(ingest.app, host="127.0.0.1", port=port, setting="PORT")
    await server.start()
    servers.append(server)
    return port


def bodies() -> itertools.repeat[bytes]:
    return itertools.repeat(b'{"batch": []}')


async def test_refused_batches_are_counted_and_not_acknowledged(
    serve: list[HttpServer],
) -> None:
    ingest = Ingest(refuse_every=5)
    port = await start(ingest, serve)

    posted = await post(port=port, write_key="k", bodies=bodies(), rate=2000, seconds=1.0)

    # 2,000 events/s in batches of 50 for 1 s: 40 batches due, every 5th refused.
    assert (posted.scheduled, posted.sent, posted.refused) == (40, 40, 8)
    assert posted.acknowledged == 32 * BATCH_SIZE
    assert posted.statuses == {503: 8}
    assert posted.faults() == ["8 refused", "statuses {503: 8}"]


async def test_a_server_slower_than_the_pace_leaves_batches_late_or_unsent(
    serve: list[HttpServer],
) -> None:
    """IN_FLIGHT requests of 0.5 s each: at most 16 batches/s get out, 40/s are due."""
    ingest = Ingest(delay_s=0.5)
    port = await start(ingest, serve)

    posted = await post(port=port, write_key="k", bodies=bodies(), rate=2000, seconds=3.0)

    assert posted.scheduled == 120
    assert posted.sent <= 3.0 * 2 * IN_FLIGHT + IN_FLIGHT  # what the slots let out, at most
    assert posted.unsent + posted.late > 0
    assert posted.faults(), "a load the server could not take at its pace is a fault"
    assert posted.achieved < 2000 * 0.6
