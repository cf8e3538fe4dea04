"""Real published tracking clients against ingest running as its own process: what they send
arrives on `events.raw` intact (same messageId, properties, traits), through `/v1/batch`
(both clients post there, with the write key as Basic user; rudder-sdk gzips its bodies)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import rudderstack.analytics.client as rudder  # type: ignore[import-untyped]
import segment.analytics.client as segment  # type: ignore[import-untyped]

from shared.codec import decode
from shared.contracts import RawEvent
from shared.topics import EVENTS_RAW
from tests.fixtures.pipeline import WRITE_KEY, Pipeline

Client = Any  # both packages ship untyped clients with the same call signatures
MakeClient = Callable[..., Client]


def segment_client(host: str, *, sync_mode: bool, on_error: Any = None) -> Client:
    return segment.Client(
        write_key=WRITE_KEY,
        host=host,
        sync_mode=sync_mode,
        max_retries=0,
        gzip=False,
        on_error=on_error,
    )


def rudder_client(host: str, *, sync_mode: bool, on_error: Any = None) -> Client:
    # gzip is rudder-sdk's default: its bodies test the Content-Encoding path.
    return rudder.Client(
        write_key=WRITE_KEY, host=host, sync_mode=sync_mode, max_retries=0, on_error=on_error
    )


CLIENTS = [
    pytest.param(segment_client, id="segment-analytics-python"),
    pytest.param(rudder_client, id="rudder-sdk-python"),
]
WHEN = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
async def running(pipeline: Pipeline) -> Pipeline:
    await pipeline.start("ingest")
    return pipeline


async def events_on(pipeline: Pipeline, count: int) -> dict[str, RawEvent]:
    records = await pipeline.read(
        EVENTS_RAW.full_name(pipeline.prefix), until=lambda records: len(records) >= count
    )
    events = [decode(record.value, RawEvent) for record in records]
    return {event.message_id: event for event in events}


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_each_call_of_a_real_client_arrives_intact(
    running: Pipeline, make_client: MakeClient
) -> None:
    client = make_client(running.ingest_url, sync_mode=True)  # posts each call, raises on non-200
    ids = {"anonymous_id": "anon-7", "timestamp": WHEN}

    def send_all() -> None:
        client.identify(
            "usr-7", {"email": "ada@initech.com", "title": "CTO"}, message_id="m1", **ids
        )
        client.track(
            "usr-7", "Demo Requested", {"plan": "pro", "seats": 25}, message_id="m2", **ids
        )
        client.page("usr-7", "Docs", "Pricing", {"path": "/pricing"}, message_id="m3", **ids)
        client.screen("usr-7", "App", "Home", {"dark": True}, message_id="m4", **ids)
        client.group(
            "usr-7", "acct-9", {"name": "Initech", "employees": 850}, message_id="m5", **ids
        )
        client.alias("anon-7", "usr-7", message_id="m6", timestamp=WHEN)

    await asyncio.to_thread(send_all)

    events = await events_on(running, 6)
    assert set(events) == {"m1", "m2", "m3", "m4", "m5", "m6"}
    assert {event.source for event in events.values()} == {"test-site"}
    assert events["m1"].type == "identify"
    assert events["m1"].traits == {"email": "ada@initech.com", "title": "CTO"}
    assert (events["m2"].event, events["m2"].properties) == (
        "Demo Requested",
        {"plan": "pro", "seats": 25},
    )
    assert (events["m3"].type, events["m3"].category, events["m3"].name) == (
        "page",
        "Docs",
        "Pricing",
    )
    assert events["m3"].properties["path"] == "/pricing"
    assert (events["m4"].type, events["m4"].name, events["m4"].properties) == (
        "screen",
        "Home",
        {"dark": True},
    )
    assert (events["m5"].group_id, events["m5"].traits) == (
        "acct-9",
        {"name": "Initech", "employees": 850},
    )
    assert (events["m6"].type, events["m6"].previous_id, events["m6"].user_id) == (
        "alias",
        "anon-7",
        "usr-7",
    )
    for event in events.values():
        assert event.original_timestamp == WHEN
        assert event.context["library"]["name"] == "analytics-python"  # both clients say so


@pytest.mark.parametrize("make_client", CLIENTS)
async def test_a_queued_client_flushes_batches_that_all_arrive(
    running: Pipeline, make_client: MakeClient
) -> None:
    failures: list[Any] = []
    client = make_client(
        running.ingest_url, sync_mode=False, on_error=lambda error, _batch: failures.append(error)
    )

    def send_and_flush() -> None:
        for n in range(250):
            client.track(f"usr-{n % 7}", "Page Scrolled", {"n": n}, message_id=f"q{n}")
        client.flush()
        client.join()

    await asyncio.to_thread(send_and_flush)

    events = await events_on(running, 250)
    assert failures == []
    assert set(events) == {f"q{n}" for n in range(250)}
    assert all(events[f"q{n}"].properties == {"n": n} for n in range(250))
