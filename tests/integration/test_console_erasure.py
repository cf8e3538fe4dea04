"""The console's part of an erasure, against the real PostgreSQL (the handler as the runner calls
it): the person's records (merged leads included) are deleted, the rows that feed the counts
are kept under a pseudonym with nothing personal left, the funnel, speed-to-lead and SLA
counters do not move, the pages still answer, a notice delivered again is harmless, a message
about an erased lead arriving later is dropped and counted, and the lead locks close the race
with a batch of the same lead, either way round."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console import people, queries
from services.console.config import Role
from services.console.handler import ReadModelHandler
from services.console.health import HealthWatch
from services.console.metrics import ERASED_LEAD_MESSAGES_DROPPED
from services.console.people import Person
from services.console.score_client import ScoreClient
from services.console.web import pages
from services.console.web.access import signed_in
from services.console.web.rendering import Pages
from shared.consumer import Message, Output
from shared.contracts import (
    CrmFeedback,
    ErasureNotice,
    ErasureReport,
    LeadProfile,
    LeadScored,
    LifecycleChanged,
    Owner,
    RoutingDecision,
    Score,
    Stage,
)
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.privacy import lead_id_digest
from shared.settings import DatabaseSettings
from shared.topics import (
    CRM_FEEDBACK,
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    PRIVACY_ERASURES,
    ROUTING_NURTURE,
    ROUTING_SDR,
)
from tests.fixtures.privacy import traces_of
from tests.unit.builders import lifecycle_change

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = T0.date()
ADA, ADA_PHONE, BOB = "lead-ada", "lead-ada-phone", "lead-bob"  # ADA_PHONE was merged into ADA
ADA_EMAIL, ADA_PHONE_EMAIL = "ada.lovelace@initech.com", "ada.l@fastmail.example"
# Her lead ids, addresses, name and company; the ids CRMs hold for her (decisions, reports);
# what a CRM wrote about her.
HER = [ADA, ADA_PHONE, ADA_EMAIL, ADA_PHONE_EMAIL, "Augusta", "Lovelace", "Initech",
       "d-ada-1", "d-ada-2", "d-phone-1", "d-phone-2", "f-ada-1", "f-ada-2", "call after 5pm"]  # fmt: skip
GRACE = Owner(id="rep-grace", name="Grace Hopper", email="grace@example.com", team="sdr-emea")
ALAN = Owner(id="rep-alan", name="Alan Turing", email="alan@example.com", team="sdr-emea")
COUNTERS = ("funnel", "stage_durations", "stage_flows", "funnel_days", "stage_duration_days",
            "stage_flow_days", "stage_now", "speed", "speed_days", "speed_months", "sla_outcomes",
            "dimension_values", "reps")  # fmt: skip
PER_LEAD = ("leads", "stage_changes", "decisions", "feedback", "audit")


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def profile_of(lead: str) -> LeadProfile:
    if lead in (ADA, ADA_PHONE):
        return LeadProfile(
            email=ADA_EMAIL if lead == ADA else ADA_PHONE_EMAIL, first_name="Augusta",
            last_name="Lovelace", title="VP Engineering", company="Initech",
            phone="+44 20 7946 0958",
        )  # fmt: skip
    return LeadProfile(email=f"{lead}@globex.example", first_name="Bob", last_name="Builder",
                       title="CTO", company="Globex")  # fmt: skip


def change(lead: str, from_stage: Stage, to_stage: Stage, at: float, *,
           reason: str = "total score 110 >= MQL threshold 60", by_sales: bool = False,
           tag: str = "1") -> LifecycleChanged:  # fmt: skip
    return lifecycle_change(
        transition_id=f"{lead}:{to_stage.value}:{tag}", lead_id=lead, from_stage=from_stage,
        to_stage=to_stage, reason=reason, at=minutes(at), received_at=minutes(at),
        by_sales=by_sales, profile=profile_of(lead),
    )  # fmt: skip


def scored(lead: str, at: float) -> LeadScored:
    return LeadScored(lead_id=lead, message_id=f"m-{lead}-{at}", contributions=[],
                      score=Score(fit=35, behaviour=80, total=115, grade="A", band=1),
                      rule_version="t", scored_at=minutes(at), received_at=minutes(at))  # fmt: skip


def decision(lead: str, decision_id: str, at: float, *, owner: Owner | None = GRACE,
             queue: str | None = None, supersedes: str | None = None,
             strategy: str = "round_robin") -> RoutingDecision:  # fmt: skip
    person = profile_of(lead)
    return RoutingDecision(
        decision_id=decision_id, transition_id=f"{lead}:mql:1", lead_id=lead, route="sdr",
        email=person.email, name=f"{person.first_name} {person.last_name}",
        company=person.company, stage=Stage.MQL,
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority="A1"),
        owner=owner, queue=queue, strategy=strategy, supersedes=supersedes,
        reasons=[f"expansion: existing customer {person.company}", "asked for a demo"],
        received_at=minutes(at) - timedelta(seconds=2), decided_at=minutes(at),
        stored_at=minutes(at), sla_due_at=minutes(at + 5), speed_to_lead_ms=2000,
    )  # fmt: skip


def nurture(lead: str, decision_id: str, at: float) -> RoutingDecision:
    return decision(lead, decision_id, at).model_copy(
        update={
            "route": "nurture",
            "owner": None,
            "track": "general-nurture",
            "strategy": "nurture_track",
            "sla_due_at": None,
        }
    )


def feedback(feedback_id: str, at: float, *, lead: str | None = None, email: str | None = None,
             outcome: str = "accepted", reason: str | None = None) -> CrmFeedback:  # fmt: skip
    return CrmFeedback(feedback_id=feedback_id, lead_id=lead, email=email, outcome=outcome,
                       reason=reason, owner_id="rep-alan", at=minutes(at))  # fmt: skip


def notice(*lead_ids: str, request_id: str = "r-1") -> ErasureNotice:
    now = datetime.now(UTC)
    return ErasureNotice(request_id=request_id, lead_ids=list(lead_ids), requested_at=now,
                         erased_at=now)  # fmt: skip


TOPICS = {LifecycleChanged: LEADS_LIFECYCLE, LeadScored: LEADS_SCORED, CrmFeedback: CRM_FEEDBACK,
          ErasureNotice: PRIVACY_ERASURES}  # fmt: skip


def messages(values: tuple[BaseModel, ...]) -> list[Message[BaseModel]]:
    def topic(value: BaseModel) -> Any:
        if isinstance(value, RoutingDecision):
            return ROUTING_SDR if value.route == "sdr" else ROUTING_NURTURE
        return TOPICS[type(value)]

    return [Message(topic=topic(value), partition=0, offset=n, key=None, value=value)
            for n, value in enumerate(values)]  # fmt: skip


async def handle(sessions: async_sessionmaker[AsyncSession], *values: BaseModel) -> list[Output]:
    async with unit_of_work(sessions) as session:
        return list(await ReadModelHandler()(messages(values), session))


def reports(outputs: list[Output]) -> list[ErasureReport]:
    return [o.value for o in outputs if isinstance(o.value, ErasureReport)]


def dropped(kind: str) -> float:
    value: float = ERASED_LEAD_MESSAGES_DROPPED.labels(kind=kind)._value.get()
    return value


async def rows_of(db: asyncpg.Connection, tables: tuple[str, ...]) -> dict[str, list[Any]]:
    found = {}
    for table in tables:
        rows = await db.fetch(f"SELECT * FROM console.{table}")  # literal table names
        found[table] = sorted(tuple(str(v) for k, v in row.items() if k != "seq") for row in rows)
    return found


async def rows_naming(db: asyncpg.Connection, lead: str) -> dict[str, list[Any]]:
    """The lead's rows in each per-lead table (its record, stage changes, decisions, ...)."""
    found = {}
    for table in PER_LEAD:
        rows = await db.fetch(f"SELECT * FROM console.{table} WHERE lead_id = $1", lead)
        found[table] = sorted(tuple(str(v) for v in row.values()) for row in rows)
    return found


def console_pages(sessions: async_sessionmaker[AsyncSession], *, role: Role) -> FastAPI:
    """The console's pages, signed in as someone with `role` (score does not answer)."""
    app = FastAPI()
    score = ScoreClient("http://127.0.0.1:1", None)
    routes = pages.console_routes(
        sessions=sessions, pages=Pages(), score=score, health=HealthWatch({})
    )
    app.include_router(routes)
    app.dependency_overrides[signed_in] = lambda: Person("rev", "Rev Ops", role)
    return app


async def ada_everywhere(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Ada in every console table (her merged lead too, with a decision waiting in a queue);
    Bob beside her; a console user looked them both up."""
    await handle(
        sessions,
        change(ADA_PHONE, Stage.ANONYMOUS, Stage.KNOWN, 0),
        change(ADA, Stage.ANONYMOUS, Stage.KNOWN, 1),
        change(BOB, Stage.ANONYMOUS, Stage.KNOWN, 1),
        change(ADA, Stage.KNOWN, Stage.MQL, 2),
        change(BOB, Stage.KNOWN, Stage.MQL, 2),
        scored(ADA, 2.5),
    )
    await handle(
        sessions,
        decision(ADA, "d-ada-1", 3),
        decision(BOB, "d-bob-1", 3),
        nurture(ADA_PHONE, "d-phone-1", 3),
        decision(
            ADA_PHONE, "d-phone-2", 4, owner=None, queue="sdr-unassigned", strategy="fallback_queue"
        ),
    )
    await handle(
        sessions,
        decision(ADA, "d-ada-2", 10, owner=ALAN, supersedes="d-ada-1", strategy="sla_reassigned"),
        feedback("f-ada-1", 12, lead=ADA, reason="Augusta asked us to call after 5pm"),
        feedback("f-bob-1", 12, lead=BOB),
        feedback("f-ada-2", 20, email=ADA_EMAIL.upper(), outcome="qualified"),
        change(
            ADA,
            Stage.MQL,
            Stage.SQL,
            20,
            by_sales=True,
            reason="CRM: qualified (Augusta asked us to call after 5pm)",
        ),
    )
    async with unit_of_work(sessions) as session:
        for lead in (ADA, BOB):
            await people.audit(session, username="rev", action="viewed lead", lead_id=lead)


async def test_an_erasure_deletes_the_records_and_anonymises_what_feeds_the_counts(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions)
    assert len(await traces_of(db, HER, schemas=["console"])) > 15  # she is there before
    counters = await rows_of(db, COUNTERS)
    per_lead = await rows_of(db, ("stage_changes", "decisions", "feedback", "audit"))
    bob = await rows_naming(db, BOB)
    async with sessions() as session:
        speed_before = await queries.speed_page(session, since=DAY, until=DAY, team=None)
    assert [(w.queue, w.leads) for w in speed_before.waiting] == [("sdr-unassigned", 1)]

    outputs = await handle(sessions, notice(ADA, ADA_PHONE))

    [report] = reports(outputs)
    assert (report.request_id, report.service) == ("r-1", "console")
    assert report.erased == {"leads": 2}
    assert report.anonymised == {"stage_changes": 4, "decisions": 4, "feedback": 2, "audit": 1}
    assert await traces_of(db, HER, schemas=["console"]) == []
    assert await rows_of(db, COUNTERS) == counters, "the counters do not move"
    assert await rows_naming(db, BOB) == bob, "Bob's rows are untouched"
    after = await rows_of(db, ("stage_changes", "decisions", "feedback", "audit"))
    assert {table: len(rows) for table, rows in after.items()} == {
        table: len(rows) for table, rows in per_lead.items()}, "anonymised, not deleted"  # fmt: skip

    # One pseudonym per lead, the same in every table; nothing personal beside it.
    stage_changes = await db.fetch(
        "SELECT lead_id, transition_id, reason, to_stage FROM console.stage_changes"
        " WHERE lead_id <> $1 ORDER BY at",
        BOB,
    )
    pseudonyms = {row["lead_id"] for row in stage_changes}
    assert len(pseudonyms) == 2
    assert all(p.startswith("erased-") for p in pseudonyms)
    assert {row["reason"] for row in stage_changes} == {""}
    assert [row["to_stage"] for row in stage_changes] == ["known", "known", "mql", "sql"]
    decisions = {
        row["strategy"]: row
        for row in await db.fetch(
            "SELECT * FROM console.decisions WHERE lead_id = ANY($1::text[])", list(pseudonyms)
        )
    }
    first, reassigned = decisions["round_robin"], decisions["sla_reassigned"]
    assert first["lead_id"] == reassigned["lead_id"]
    assert reassigned["supersedes"] == first["decision_id"], "the chain is kept, renamed"
    assert (first["rep"], first["rep_name"], first["speed_ms"]) == (
        "rep-grace",
        "Grace Hopper",
        2000,
    )
    assert all(row["reasons"] == [] for row in decisions.values())
    queued = decisions["fallback_queue"]
    assert (queued["rep"], queued["closed_reason"]) == ("queue:sdr-unassigned", "lead erased")
    assert queued["closed_at"] is not None, "no message will ever close it"
    audit = await db.fetch("SELECT lead_id FROM console.audit ORDER BY seq")
    assert audit[0]["lead_id"] in pseudonyms
    assert audit[1]["lead_id"] == BOB
    erased = await db.fetch("SELECT lead_digest FROM console.erased_leads")
    assert {bytes(r[0]) for r in erased} == {lead_id_digest(ADA), lead_id_digest(ADA_PHONE)}

    async with sessions() as session:
        speed = await queries.speed_page(session, since=DAY, until=DAY, team=None)
        load = await queries.sdr_load(session, days=3650)
        for key in (ADA, ADA_EMAIL, *pseudonyms):
            assert await queries.lead_story(session, key) is None
    assert speed.waiting == [], "the erased lead no longer waits in the queue"
    assert speed.by_rep == speed_before.by_rep, "speed-to-lead and SLA outcomes stay"
    assert sum(line.leads for line in load) == 3  # Ada's, Bob's and the queued first decisions


async def test_a_notice_delivered_again_changes_nothing_and_reports_again(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions)
    await handle(sessions, notice(ADA, ADA_PHONE))
    before = await rows_of(db, (*COUNTERS, *PER_LEAD, "erased_leads"))

    [again] = reports(await handle(sessions, notice(ADA, ADA_PHONE)))

    assert (again.erased, again.anonymised) == ({}, {})
    assert await rows_of(db, (*COUNTERS, *PER_LEAD, "erased_leads")) == before
    assert await db.fetchval("SELECT count(*) FROM console.erased_leads") == 2


async def test_messages_about_erased_leads_arriving_later_are_dropped_and_counted(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions)
    await handle(sessions, notice(ADA, ADA_PHONE))
    counters = await rows_of(db, COUNTERS)
    kinds = ("stage change", "decision", "crm report")
    before = {kind: dropped(kind) for kind in kinds}

    await handle(
        sessions,
        change(ADA, Stage.SQL, Stage.SQO, 30, tag="late"),
        change(ADA_PHONE, Stage.KNOWN, Stage.LEAD, 30, tag="late"),
        scored(ADA, 31),
        decision(ADA, "d-ada-3", 31),
        feedback("f-ada-3", 32, lead=ADA, outcome="won", reason="Augusta signed"),
        feedback("f-ada-4", 32, email=ADA_EMAIL, outcome="won"),  # no record has her email now
        change(BOB, Stage.MQL, Stage.SQL, 30, tag="2"),
    )

    assert {kind: dropped(kind) - n for kind, n in before.items()} == {
        "stage change": 2, "decision": 1, "crm report": 1}  # fmt: skip
    assert await traces_of(db, [*HER, "d-ada-3", "f-ada-3", "f-ada-4"], schemas=["console"]) == []
    assert await db.fetchval("SELECT stage FROM console.leads WHERE lead_id = $1", BOB) == "sql"
    after = await rows_of(db, COUNTERS)
    assert after != counters, "Bob's change in the same batch is counted"
    async with sessions() as session:
        page = await queries.funnel_page(session, queries.CohortFilter(since=DAY, until=DAY))
    assert page.funnel.leads == 3, "the erased leads stay counted, once"


async def test_the_pages_answer_for_anonymised_rows(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions)
    await handle(sessions, notice(ADA, ADA_PHONE))
    pseudonym = await db.fetchval("SELECT lead_id FROM console.audit WHERE lead_id <> $1", BOB)
    transport = httpx.ASGITransport(app=console_pages(sessions, role="admin"))
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        for path in (f"/leads/{pseudonym}", f"/api/leads/{pseudonym}", f"/leads/{ADA}",
                     f"/leads/{ADA_EMAIL}"):  # fmt: skip
            assert (await client.get(path)).status_code == 404, path
        audit = await client.get("/admin/audit", params={"lead": pseudonym})
        assert audit.status_code == 200
        assert pseudonym in audit.text
        since, until = DAY.isoformat(), (DAY + timedelta(days=1)).isoformat()
        for path in ("/speed", "/api/speed", "/funnel", "/api/funnel", "/speed.csv", "/leads"):
            answer = await client.get(path, params={"since": since, "until": until, "q": "a"})
            assert answer.status_code == 200, path
        assert (await client.get(f"/leads/{BOB}")).status_code == 200


async def test_an_erasure_waits_for_a_batch_of_the_lead_under_way_and_erases_what_it_wrote(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """Ada's first stage change is being applied (no record of hers committed yet: only the
    lead lock covers her) when her erasure arrives on another replica."""
    async with unit_of_work(sessions) as batch:
        await ReadModelHandler()(messages((change(ADA, Stage.ANONYMOUS, Stage.KNOWN, 0),)), batch)
        erasure = asyncio.create_task(handle(sessions, notice(ADA)))
        await asyncio.sleep(0.5)
        assert not erasure.done(), "the erasure waits for the lead's lock"
    [report] = reports(await asyncio.wait_for(erasure, 10))

    assert (report.erased, report.anonymised) == ({"leads": 1}, {"stage_changes": 1})
    assert await traces_of(db, HER, schemas=["console"]) == []


async def test_a_batch_of_the_lead_waits_for_an_erasure_under_way_and_then_drops_it(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    before = dropped("stage change")
    async with unit_of_work(sessions) as erasing:
        await ReadModelHandler()(messages((notice(ADA),)), erasing)
        batch = asyncio.create_task(handle(sessions, change(ADA, Stage.ANONYMOUS, Stage.KNOWN, 0)))
        await asyncio.sleep(0.5)
        assert not batch.done(), "the batch waits for the lead's lock"
    await asyncio.wait_for(batch, 10)

    assert dropped("stage change") == before + 1
    assert await traces_of(db, HER, schemas=["console"]) == []
    assert await db.fetchval("SELECT count(*) FROM console.funnel") == 0


async def test_a_lookup_during_an_erasure_waits_and_then_finds_no_lead(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """Looking a lead up is audited under the lead's lock: a lookup that read the record just
    before the erasure committed answers 404 and leaves no audit entry naming the lead."""
    await ada_everywhere(sessions)
    transport = httpx.ASGITransport(app=console_pages(sessions, role="viewer"))
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        async with unit_of_work(sessions) as erasing:
            await ReadModelHandler()(messages((notice(ADA),)), erasing)
            lookup = asyncio.create_task(client.get(f"/api/leads/{ADA}"))
            await asyncio.sleep(0.5)
            assert not lookup.done(), "the lookup waits for the lead's lock"
        assert (await asyncio.wait_for(lookup, 10)).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM console.audit WHERE lead_id = $1", ADA) == 0
