"""The router through the real broker and database: owners, two instances sharing one team,
SLA breaches, suppression, history before the backfill horizon, and a CRM consuming decisions
with an independent Kafka client."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.broker import free_port
from devstack.processes import ServiceProcess
from examples.crm_consumer import CurrentRoutes, consume_routing
from shared.codec import encode
from shared.contracts import Consent, CrmFeedback, LeadProfile, LifecycleChanged, Score, Stage
from shared.topics import (
    CRM_FEEDBACK,
    LEADS_LIFECYCLE,
    ROUTING_NURTURE,
    ROUTING_SDR,
    ROUTING_WITHDRAWALS,
)
from tests.fixtures.pipeline import Pipeline, Record

ALWAYS_ON_TEAM = """\
version: test-router
teams:
  - name: sdr
    manager: {id: mgr-emmy, name: Emmy Noether, email: emmy@example.com}
    reps:
      - {id: rep-a, name: Rep A, email: a@example.com, weight: 2, daily_cap: 20}
      - {id: rep-b, name: Rep B, email: b@example.com, daily_cap: 10}
      - {id: rep-c, name: Rep C, email: c@example.com, daily_cap: 10}
default_team: sdr
fallback_queue: sdr-unassigned
nurture: {default: general-nurture, settle: 1s}
sla:
  default: SLA
"""


def use_routing(pipeline: Pipeline, tmp_path: Path, *, sla: str = "4h", **env: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ALWAYS_ON_TEAM.replace("SLA", sla))
    pipeline.addresses.service_env["router"] = {
        "LEADFLOW_ROUTER_ROUTING_FILE": str(path),
        **{f"LEADFLOW_ROUTER_{k.upper()}": v for k, v in env.items()},
    }


def mql(
    lead_id: str,
    *,
    email: str | None = None,
    priority: str = "A1",
    at: datetime | None = None,
    to_stage: Stage = Stage.MQL,
) -> LifecycleChanged:
    """A stage change (to mql unless told), received now; `at` (its triggering event's time)
    is now unless given, e.g. months ago for a change from a backfill."""
    now = datetime.now(UTC)
    return LifecycleChanged(
        transition_id=f"{lead_id}:{to_stage.value}:msg-1",
        lead_id=lead_id,
        from_stage=Stage.LEAD,
        to_stage=to_stage,
        reason="total score 110 >= MQL threshold 80",
        at=at or now,
        received_at=now,
        profile=LeadProfile(email=email or f"{lead_id}@example.com", first_name="Lee"),
        consent=Consent(),
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority=priority),
    )


def send(pipeline: Pipeline, change: LifecycleChanged) -> None:
    pipeline.produce_raw(LEADS_LIFECYCLE, encode(change), key=change.lead_id.encode())


def decisions_of(records: list[Record], lead_id: str) -> list[dict[str, Any]]:
    return [r.json() for r in records if r.json()["lead_id"] == lead_id]


# ---- two instances, one team ------------------------------------------------------------------


@pytest.mark.slow  # about 16 s: `make test-slow`
async def test_two_router_instances_share_the_load_without_giving_a_slot_twice(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    use_routing(pipeline, tmp_path)
    await pipeline.start("router")
    second = ServiceProcess(
        "router",
        dataclasses.replace(
            pipeline.addresses,
            health_ports={**pipeline.addresses.health_ports, "router": free_port()},
            api_ports={**pipeline.addresses.api_ports, "router": free_port()},
        ),
        log_file=tmp_path / "router-2.log",
    ).start()
    try:
        await asyncio.to_thread(second.wait_ready)
        await asyncio.to_thread(pipeline.processes["router"].wait_ready)
        await asyncio.sleep(1)  # both members assigned: the group has settled

        leads = [f"lead-{n:03d}-{uuid.uuid4().hex[:6]}" for n in range(60)]
        for lead in leads:
            send(pipeline, mql(lead))
        records = await pipeline.read(
            ROUTING_SDR.full_name(pipeline.prefix),
            until=lambda rs: len({r.json()["lead_id"] for r in rs}) >= 60,
            timeout_s=60,
        )
        await asyncio.sleep(2)
        records = await pipeline.read_all(ROUTING_SDR.full_name(pipeline.prefix), settle_s=1)

        decisions = [r.json() for r in records]
        assert len(decisions) == 60, "one decision per transition, none twice"
        assert len({d["decision_id"] for d in decisions}) == 60
        owners = Counter(d["owner"]["id"] if d["owner"] else d["queue"] for d in decisions)
        # Capacity is 40 (caps 20/10/10): exactly filled, never exceeded, the rest queued.
        assert owners == {"rep-a": 20, "rep-b": 10, "rep-c": 10, "sdr-unassigned": 20}
        queued = [d for d in decisions if d["queue"]]
        assert all(d["strategy"] == "fallback_queue" for d in queued)
        assert "rep-a at daily cap 20" in queued[0]["reasons"][-1]

        async with httpx.AsyncClient(timeout=10) as client:
            counts = [
                (await client.get(url)).text.count("leadflow_router_decisions_total{")
                for url in (
                    pipeline.addresses.health_url("router", "/metrics"),
                    second.addresses.health_url("router", "/metrics"),
                )
            ]
        assert all(counts), f"both instances decided something: {counts}{pipeline.logs()}"
    finally:
        await asyncio.to_thread(second.stop)


# ---- SLA --------------------------------------------------------------------------------------


async def test_an_sla_breach_reassigns_then_escalates_and_acceptance_stops_the_timer(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    use_routing(
        pipeline,
        tmp_path,
        sla="3s\n  reassign_at_most: 1",
        sla_check_interval_s="0.3",
        sla_recheck_s="1",
    )
    await pipeline.start("router")
    ignored, accepted = f"ignored-{uuid.uuid4().hex[:6]}", f"accepted-{uuid.uuid4().hex[:6]}"
    send(pipeline, mql(ignored))
    send(pipeline, mql(accepted))
    topic = ROUTING_SDR.full_name(pipeline.prefix)
    first = await pipeline.read(topic, until=lambda rs: len(rs) >= 2)
    pipeline.produce_raw(
        CRM_FEEDBACK,
        encode(
            CrmFeedback(
                feedback_id=f"fb-{accepted}",
                lead_id=accepted,
                outcome="accepted",
                owner_id=decisions_of(first, accepted)[0]["owner"]["id"],
                at=datetime.now(UTC),
            )
        ),
        key=accepted.encode(),
    )

    records = await pipeline.read(
        topic, until=lambda rs: len(decisions_of(rs, ignored)) >= 3, timeout_s=30
    )
    await asyncio.sleep(5)  # more than the SLA again: nothing new may come
    records = await pipeline.read_all(topic, settle_s=1)

    chain = decisions_of(records, ignored)
    assert [d["strategy"] for d in chain] == ["round_robin", "sla_reassigned", "sla_escalated"]
    owners = [d["owner"]["id"] for d in chain]
    assert owners[0] != owners[1], "reassigned to someone who has not had the lead"
    assert owners[2] == "mgr-emmy"
    assert [d["supersedes"] for d in chain] == [
        None,
        chain[0]["decision_id"],
        chain[1]["decision_id"],
    ]
    assert len({d["transition_id"] for d in chain}) == 1
    assert chain[1]["reasons"][0] == f"SLA breached: {owners[0]} did not accept within 3 s"
    assert len(decisions_of(records, accepted)) == 1, "accepted in time: never reassigned"

    history = await pipeline.routing_history(ignored)
    # The manager's SLA ran out too (recorded), but an escalated lead stays with the manager.
    assert [b["owner_id"] for b in history["sla_breaches"]] == owners
    assert history["decisions"][0]["closed_reason"] == "SLA breached: sla_reassigned"
    accepted_history = await pipeline.routing_history(f"{accepted}@example.com")
    assert accepted_history["decisions"][0]["closed_reason"] == "crm: accepted"
    assert accepted_history["sla_breaches"] == []


# ---- the backfill horizon ---------------------------------------------------------------------

BACKFILLED = timedelta(days=120)  # a history loaded from another tool: months old


def history_reason(change: LifecycleChanged) -> str:
    return (
        f"history: the stage change happened at {change.at.isoformat()},"
        " before the backfill horizon of 72 h"
    )


async def metric(pipeline: Pipeline, name: str) -> float:
    """A counter without labels on the router's /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(pipeline.addresses.health_url("router", "/metrics"))).text
    values = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    assert values, f"{name} not on /metrics"
    return float(values[0])


async def test_an_old_mql_is_recorded_as_history_and_a_fresh_one_routes_at_once(
    pipeline: Pipeline, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A backfilled MQL (its triggering event 120 days old), twice, and a live MQL in one batch:
    the old one gets no decision on routing.sdr, no SLA timer and no rep's capacity, and is in
    its routing history with the reason, once; the live one is routed at once. Delivered again
    later, the old one is still recorded once and counted once."""
    use_routing(pipeline, tmp_path)
    suffix = uuid.uuid4().hex[:6]
    old = mql(f"old-{suffix}", at=datetime.now(UTC) - BACKFILLED)
    fresh, later = mql(f"fresh-{suffix}"), mql(f"later-{suffix}")
    # On the topic before the router starts, under one key (one partition; the router reads the
    # lead from the value): its first fetch, one batch, holds all three.
    for change in (old, fresh, old):
        pipeline.produce_raw(LEADS_LIFECYCLE, encode(change), key=b"backfill")
    await pipeline.start("router")
    sdr = ROUTING_SDR.full_name(pipeline.prefix)
    await pipeline.read(sdr, until=lambda rs: bool(decisions_of(rs, fresh.lead_id)), timeout_s=30)
    # Redelivered after the batch was decided; the next lead on the same partition says when
    # the router has handled it.
    for change in (old, later):
        pipeline.produce_raw(LEADS_LIFECYCLE, encode(change), key=b"backfill")
    await pipeline.read(sdr, until=lambda rs: bool(decisions_of(rs, later.lead_id)), timeout_s=30)
    records = await pipeline.read_all(sdr, settle_s=1)

    assert decisions_of(records, old.lead_id) == []
    (decision,) = decisions_of(records, fresh.lead_id)
    assert decision["owner"]["team"] == "sdr"
    assert decision["sla_due_at"] is not None
    nurture = await pipeline.read_all(ROUTING_NURTURE.full_name(pipeline.prefix), settle_s=0.5)
    assert nurture == []

    history = await pipeline.routing_history(old.lead_id)
    assert history["decisions"] == []
    assert history["sla_breaches"] == []
    assert [(s["transition_id"], s["stage"], s["reason"]) for s in history["suppressions"]] == [
        (old.transition_id, "mql", history_reason(old))
    ]
    assert (
        await db.fetchval("SELECT count(*) FROM router.decisions WHERE lead_id = $1", old.lead_id)
        == 0
    )
    written_by = [  # the transaction that wrote each row: the batch
        await db.fetchval(f"SELECT xmin::text FROM router.{table} WHERE transition_id = $1", t)
        for table, t in (("suppressions", old.transition_id), ("decisions", fresh.transition_id))
    ]
    assert written_by[0] == written_by[1], "the old and the fresh MQL were one batch"
    timers = await db.fetch("SELECT lead_id FROM router.decisions WHERE next_check_at IS NOT NULL")
    assert sorted(r["lead_id"] for r in timers) == sorted([fresh.lead_id, later.lead_id])
    assert await db.fetchval("SELECT sum(assigned) FROM router.rep_loads") == 2, "one per live MQL"
    assert await metric(pipeline, "leadflow_router_history_only_total") == 1


async def test_an_old_change_still_closes_the_lead_s_open_decision(
    pipeline: Pipeline, tmp_path: Path, db: asyncpg.Connection
) -> None:
    """A lead routed live, then a stage change from its past (a CRM reporting with last month's
    date that sales rejected it: recycled, a nurture trigger): the open decision is closed and
    its SLA timer stopped, as any new stage does; the old change enrols it in no nurture track."""
    use_routing(pipeline, tmp_path)
    await pipeline.start("router")
    lead = f"closed-{uuid.uuid4().hex[:6]}"
    send(pipeline, mql(lead))
    sdr = ROUTING_SDR.full_name(pipeline.prefix)
    await pipeline.read(sdr, until=lambda rs: bool(decisions_of(rs, lead)), timeout_s=30)
    recycled = mql(lead, to_stage=Stage.RECYCLED, at=datetime.now(UTC) - timedelta(days=30))
    send(pipeline, recycled)

    # Until the router has handled the recycled change, one way or the other.
    deadline = time.monotonic() + 30
    history = await pipeline.routing_history(lead)
    while len(history["decisions"]) + len(history["suppressions"]) < 2:
        assert time.monotonic() < deadline, f"recycled change never handled{pipeline.logs()}"
        await asyncio.sleep(0.2)
        history = await pipeline.routing_history(lead)

    assert [(s["stage"], s["reason"]) for s in history["suppressions"]] == [
        ("recycled", history_reason(recycled))
    ]
    (decision,) = history["decisions"]
    assert decision["closed_reason"] == "lead changed stage"
    timer = await db.fetchval(
        "SELECT next_check_at FROM router.decisions WHERE decision_id = $1",
        decision["decision_id"],
    )
    assert timer is None, "the SLA timer stopped"
    nurture = await pipeline.read_all(ROUTING_NURTURE.full_name(pipeline.prefix), settle_s=0.5)
    assert decisions_of(nurture, lead) == []


# ---- through the whole pipeline ---------------------------------------------------------------


async def test_a_hot_lead_from_an_owned_account_goes_to_its_owner(pipeline: Pipeline) -> None:
    pipeline.addresses.sample_references = True  # accounts.csv: globex.com is rep-alan's
    await pipeline.start("ingest", "enrich", "score", "router")
    email = f"hank.{uuid.uuid4().hex[:6]}@globex.com"
    user = f"u-{uuid.uuid4().hex[:6]}"

    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/identify",
            {
                "userId": user,
                "traits": {"email": email, "name": "Hank Scorpio", "title": "VP of Operations"},
            },
        ),
        ("/v1/track", {"userId": user, "event": "Demo Requested"}),
    ]
    for path, body in calls:
        assert (await pipeline.post(path, body)).status_code == 200

    records = await pipeline.read(
        ROUTING_SDR.full_name(pipeline.prefix),
        until=lambda rs: any(r.json()["email"] == email for r in rs),
        timeout_s=60,
    )
    decision = next(r.json() for r in records if r.json()["email"] == email)
    assert decision["owner"]["id"] == "rep-alan"
    assert decision["strategy"] == "account_owner"
    assert decision["account_id"] == "acct-0002"
    assert decision["reasons"][-1] == "account owner of Globex Corporation (acct-0002)"


@pytest.mark.slow  # about 13 s: `make test-slow` (make test stays within 20 minutes)
async def test_an_unsubscribed_lead_gets_no_decision_and_its_history_says_why(
    pipeline: Pipeline,
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    email = f"olga.{uuid.uuid4().hex[:6]}@initech.com"
    user = f"u-{uuid.uuid4().hex[:6]}"

    calls: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/identify",
            {
                "userId": user,
                "traits": {"email": email, "title": "VP of Sales", "unsubscribed": True},
            },
        ),
        ("/v1/track", {"userId": user, "event": "Demo Requested"}),
        ("/v1/track", {"userId": user, "event": "Pricing Viewed"}),
    ]
    for path, body in calls:
        assert (await pipeline.post(path, body)).status_code == 200

    url = pipeline.addresses.api_url("router", f"/v1/leads/{email}/routing")

    async def routing() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10, headers=pipeline.addresses.api_headers) as client:
            response = await client.get(url)
        return dict(response.json()) if response.status_code == 200 else {}

    # Until the router has handled the lead's last change (mql), one way or the other.
    deadline = time.monotonic() + 60
    while not _handled_mql(await routing()):
        assert time.monotonic() < deadline, f"mql change never handled{pipeline.logs()}"
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # anything else the router would do for the lead lands by now

    history = await routing()  # read after the wait
    assert history["decisions"] == []
    assert [(s["stage"], s["reason"].split(":")[0]) for s in history["suppressions"]] == [
        ("known", "opted out"),
        ("mql", "opted out"),
    ]
    for topic in (ROUTING_SDR, ROUTING_NURTURE):
        records = await pipeline.read_all(topic.full_name(pipeline.prefix), settle_s=1)
        assert not [r for r in records if r.json()["email"] == email]


def _handled_mql(history: dict[str, Any]) -> bool:
    """Whether a lead's routing history has an entry (decision or suppression) for mql."""
    return bool(history) and (
        bool(history["decisions"]) or any(s["stage"] == "mql" for s in history["suppressions"])
    )


# ---- a CRM consuming decisions ------------------------------------------------------------------


async def test_a_crm_consumes_decisions_with_confluent_kafka_and_each_matches_the_schema(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The example connector (examples/crm_consumer.py) reads the three routing topics, checks
    every message against its published schema, and applies them by each lead's sequence: the
    leads that were nurtured first end with their SDR decision current, their nurture decision
    withdrawn."""
    use_routing(pipeline, tmp_path)
    await pipeline.start("router")
    leads = [f"crm-{n}-{uuid.uuid4().hex[:6]}" for n in range(12)]
    nurtured = leads[:3]
    for lead in nurtured:
        send(pipeline, mql(lead, to_stage=Stage.LEAD))
    await pipeline.read(
        ROUTING_NURTURE.full_name(pipeline.prefix),
        until=lambda rs: {r.json()["lead_id"] for r in rs} >= set(nurtured),
    )  # released once settled (1 s)
    for lead in leads:
        send(pipeline, mql(lead, priority="B2"))
    routes = CurrentRoutes()
    messages: list[tuple[str, dict[str, Any]]] = []
    invalid: list[str] = []
    done = threading.Event()

    def collect(topic: str, message: dict[str, Any]) -> None:
        messages.append((topic, message))
        routes.apply(topic, message)
        current = [routes.current.get(lead) for lead in leads]
        if all(c is not None and c["route"] == "sdr" for c in current):
            done.set()

    worker = asyncio.to_thread(
        consume_routing,
        bootstrap=pipeline.addresses.kafka_bootstrap,
        topics=[t.full_name(pipeline.prefix) for t in (ROUTING_SDR, ROUTING_NURTURE, ROUTING_WITHDRAWALS)],
        group_id=f"crm-{uuid.uuid4().hex[:6]}",
        on_message=collect,
        on_invalid=lambda raw, reason: invalid.append(reason),
        should_stop=done.is_set,
    )  # fmt: skip
    await asyncio.wait_for(worker, timeout=60)

    assert invalid == []
    sdr = [m for topic, m in messages if topic == "routing.sdr"]
    assert sorted(d["lead_id"] for d in sdr) == sorted(leads)
    assert all(d["sla_due_at"] and d["speed_to_lead_ms"] >= 0 for d in sdr)
    assert json.loads(json.dumps(sdr[0]))["owner"]["team"] == "sdr"
    assert {lead: routes.applied[lead] for lead in leads} == {
        lead: 3 if lead in nurtured else 1 for lead in leads
    }  # nurture 1, withdrawal 2, sdr 3
    withdrawn = [m for topic, m in messages if topic == "routing.withdrawals"]
    assert sorted((w["lead_id"], w["cause"]) for w in withdrawn) == sorted(
        (lead, "replaced") for lead in nurtured
    )
