"""A lead from website events to a routing decision, through the real broker and database."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from shared.topics import ROUTING_NURTURE, ROUTING_SDR
from tests.fixtures.pipeline import Pipeline, Record


def decisions_for(email: str) -> Callable[[list[Record]], bool]:
    def found(records: list[Record]) -> bool:
        return any(r.json()["email"] == email for r in records)

    return found


async def test_hot_lead_reaches_an_sdr_with_an_owner(pipeline: Pipeline) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    email = f"vera.{uuid.uuid4().hex[:6]}@acme-robotics.com"

    identify = await pipeline.post(
        "/v1/identify",
        {
            "userId": "u-vera",
            "traits": {
                "email": email,
                "firstName": "Vera",
                "lastName": "Kim",
                "title": "VP of Sales",
                "company": "Acme Robotics",
            },
        },
    )
    track = await pipeline.post("/v1/track", {"userId": "u-vera", "event": "Demo Requested"})
    assert (identify.status_code, identify.json()) == (200, {"success": True})
    assert (track.status_code, track.json()) == (200, {"success": True})

    records = await pipeline.read(
        ROUTING_SDR.full_name(pipeline.prefix), until=decisions_for(email)
    )
    decision = next(r.json() for r in records if r.json()["email"] == email)
    assert decision["route"] == "sdr"
    # acme-robotics.com is a US company (sample firmographics): the AMER territory, whose team
    # overflows to the always-on inbound desk outside New York office hours.
    assert decision["territory"] == "amer"
    assert (decision["owner"]["team"], decision["strategy"]) in {
        ("sdr-amer", "round_robin"),
        ("sdr-inbound", "overflow"),
    }
    assert decision["stage"] == "mql"
    assert decision["name"] == "Vera Kim"
    assert decision["score"]["total"] >= 60
    assert "asked for a demo" in decision["reasons"]
    assert decision["sla_due_at"] is not None
    assert decision["speed_to_lead_ms"] >= 0
    assert records[0].key == decision["lead_id"].encode()


async def test_lead_below_the_threshold_goes_to_nurture(pipeline: Pipeline) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    email = f"sam.{uuid.uuid4().hex[:6]}@smallshop.io"

    await pipeline.post("/v1/track", {"anonymousId": "anon-sam", "event": "Content Downloaded"})
    response = await pipeline.post(
        "/v1/identify",
        {"anonymousId": "anon-sam", "traits": {"email": email, "title": "Marketing Manager"}},
    )
    assert response.status_code == 200

    records = await pipeline.read(
        ROUTING_NURTURE.full_name(pipeline.prefix), until=decisions_for(email)
    )
    decision = next(r.json() for r in records if r.json()["email"] == email)
    assert decision["route"] == "nurture"
    assert decision["owner"] is None
    assert decision["track"] in {"general-nurture", "high-fit-nurture", "practitioner-education"}
    # The anonymous download counted once the visitor was known: engaged -> stage lead.
    assert decision["stage"] == "lead"
    assert decision["score"]["behaviour"] == 10
    sdr = await pipeline.read_all(ROUTING_SDR.full_name(pipeline.prefix), settle_s=1)
    assert not [r for r in sdr if r.json()["email"] == email]


async def test_services_report_health_and_metrics_and_drain_on_sigterm(pipeline: Pipeline) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    email = f"metrics.{uuid.uuid4().hex[:6]}@initech.com"
    await pipeline.post("/v1/identify", {"userId": "u-m", "traits": {"email": email}})
    await pipeline.read(
        ROUTING_NURTURE.full_name(pipeline.prefix), until=decisions_for(email), timeout_s=30
    )
    async with httpx.AsyncClient(timeout=5) as client:
        for service in ("ingest", "enrich", "score", "router"):
            alive = await client.get(pipeline.addresses.health_url(service, "/healthz"))
            ready = await client.get(pipeline.addresses.health_url(service, "/readyz"))
            assert (alive.status_code, ready.status_code) == (200, 200), service
        router_metrics = (
            await client.get(pipeline.addresses.health_url("router", "/metrics"))
        ).text
        ingest_metrics = (
            await client.get(pipeline.addresses.health_url("ingest", "/metrics"))
        ).text
    lifecycle = f'topic="{pipeline.prefix}leads.lifecycle"'
    assert f'leadflow_messages_in_total{{service="router",{lifecycle}}} 1.0' in router_metrics
    assert 'leadflow_speed_to_lead_seconds_count{route="nurture"} 1.0' in router_metrics
    assert "leadflow_batch_seconds_bucket" in router_metrics
    assert 'leadflow_consumer_lag{partition="' in router_metrics
    assert (
        f'leadflow_messages_out_total{{service="ingest",topic="{pipeline.prefix}events.raw"}} 1.0'
        in ingest_metrics
    )
    # SIGTERM: every service drains, commits and exits cleanly.
    for service in ("ingest", "enrich", "score", "router"):
        assert pipeline.stop(service) == 0, pipeline.logs()
