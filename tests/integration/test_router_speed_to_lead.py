"""Speed-to-lead counts the router's own time: a decision is stamped (`stored_at`) as the
router's last step before writing it, after its locks and reads, and the copy stored in
`router.decisions` is the copy CRMs receive. Real PostgreSQL, the router's own handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.domain import ToSdr, choose_route
from services.router.handler import RouterHandler
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from services.router.routing_versions import pinned
from shared.consumer import Message
from shared.contracts import RoutingDecision, Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import LEADS_LIFECYCLE
from tests.fixtures.routing import DECISION_TOPICS, decisions_in, release_settled
from tests.unit.builders import lifecycle_change, profile

HELD_S = 0.5  # how long another router instance holds the team's lock


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


def message(stage: Stage, lead: str) -> Message[BaseModel]:
    now = datetime.now(UTC)
    change = lifecycle_change(
        transition_id=f"{lead}:{stage.value}:m",
        lead_id=lead,
        to_stage=stage,
        at=now,
        received_at=now,
        profile=profile(email=f"{lead}@northwind-logistics.com"),
    )
    return Message(topic=LEADS_LIFECYCLE, partition=0, offset=0, key=None, value=change)


async def stored_payload(db: asyncpg.Connection, decision_id: str) -> RoutingDecision:
    payload = await db.fetchval(
        "SELECT payload FROM router.decisions WHERE decision_id = $1", decision_id
    )
    return RoutingDecision.model_validate_json(payload)


async def test_the_time_waiting_for_a_team_lock_is_part_of_speed_to_lead(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """Another instance holds the lead's team lock for HELD_S: the decision is stamped after the
    wait, so its speed-to-lead holds the wait (stamped when the handler started, as before
    2026-12, it would be a few ms)."""
    config = load_routing(DEFAULT_ROUTING_FILE)
    handler = RouterHandler(
        pinned(config), sla_recheck=timedelta(minutes=5), backfill_horizon=timedelta(hours=72)
    )
    mql = message(Stage.MQL, "lead-1")
    route = choose_route(mql.value, config)  # type: ignore[arg-type]
    assert isinstance(route, ToSdr), "the default routing file sends an MQL to sales"

    async with sessions() as holder:
        await holder.begin()
        await repository.lock_teams_and_read_loads(holder, teams=route.teams_to_lock, days={})

        async def route_the_lead() -> list[RoutingDecision]:
            async with unit_of_work(sessions) as session:
                outputs = await handler([mql], session)
            return decisions_in(outputs)

        routing = asyncio.create_task(route_the_lead())
        started = time.monotonic()
        await asyncio.sleep(HELD_S)
        assert not routing.done(), "the router waits for the team lock"
        await holder.commit()
        (decision,) = await asyncio.wait_for(routing, timeout=10)
    waited_ms = 1000 * (time.monotonic() - started)

    assert decision.stored_at is not None
    assert decision.stored_at - decision.decided_at >= timedelta(seconds=HELD_S)
    assert decision.speed_to_lead_ms == int(
        (decision.stored_at - decision.received_at) / timedelta(milliseconds=1)
    )
    assert 1000 * HELD_S <= decision.speed_to_lead_ms <= waited_ms + 1000
    assert await stored_payload(db, decision.decision_id) == decision, "CRMs get what is stored"


async def test_a_nurture_decision_is_stamped_as_it_is_stored_too(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The one-statement path (nurture only) stamps before its statement as well; the decision
    is sent once it settled, as it was stored (its sequence and release time added)."""
    handler = RouterHandler(
        pinned(load_routing(DEFAULT_ROUTING_FILE)),
        sla_recheck=timedelta(minutes=5),
        backfill_horizon=timedelta(hours=72),
    )
    before = datetime.now(UTC)
    async with unit_of_work(sessions) as session:
        held = await handler([message(Stage.KNOWN, "lead-2")], session)
    assert [o for o in held if o.topic in DECISION_TOPICS] == []
    outputs = await release_settled(handler, sessions)
    (decision,) = decisions_in(outputs)

    assert decision.route == "nurture"
    assert decision.sequence == 1
    assert decision.released_at is not None
    assert decision.stored_at is not None
    assert decision.stored_at <= decision.released_at
    assert decision.stored_at is not None
    assert before <= decision.decided_at <= decision.stored_at <= datetime.now(UTC)
    assert decision.speed_to_lead_ms == int(
        (decision.stored_at - decision.received_at) / timedelta(milliseconds=1)
    )
    assert await stored_payload(db, decision.decision_id) == decision
