"""The console's read model against the real PostgreSQL: the handler's counters equal a
recomputation from the stored leads, a message produced twice upstream changes nothing, a
lead whose grade changes moves to its new grade's counters, and speed-to-lead and SLA outcomes
follow the decisions and what the CRM reports (by lead id or by email)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console import queries, repository
from services.console.funnel import Share, share_of
from services.console.handler import ReadModelHandler
from shared.consumer import Message
from shared.contracts import CrmFeedback, LeadScored, LifecycleChanged, RoutingDecision, Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE, LEADS_SCORED, ROUTING_NURTURE, ROUTING_SDR
from tests.fixtures.infra import REPO

EXAMPLES = REPO / "shared" / "contracts" / "examples"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY = T0.date()


def example(topic: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((EXAMPLES / f"{topic}.json").read_text())[0]
    return document


def change(lead: str, number: int, from_stage: str, to_stage: str, minutes: float, *,
           grade: str = "A", email: str | None = None) -> Message[BaseModel]:  # fmt: skip
    value = example("leads.lifecycle") | {
        "transition_id": f"{lead}:{to_stage}:{number}",
        "lead_id": lead,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "received_at": (T0 + timedelta(minutes=minutes)).isoformat(),
    }
    value["profile"] = value["profile"] | {"email": email or f"{lead}@northwind-logistics.com"}
    value["score"] = value["score"] | {"grade": grade}
    return Message(
        LEADS_LIFECYCLE, 0, number, lead.encode(), LifecycleChanged.model_validate(value)
    )


def scored(lead: str, minutes: float, grade: str) -> Message[BaseModel]:
    value = {
        "lead_id": lead,
        "message_id": f"m-{lead}-{minutes}",
        "score": {"fit": 5, "behaviour": 0, "total": 5, "grade": grade, "band": 4},
        "contributions": [],
        "rule_version": "t",
        "scored_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "received_at": (T0 + timedelta(minutes=minutes)).isoformat(),
    }
    return Message(LEADS_SCORED, 0, 0, lead.encode(), LeadScored.model_validate(value))


def decision(lead: str, decision_id: str, minutes: float, *, rep: str = "rep-grace",
             supersedes: str | None = None, strategy: str = "round_robin") -> Message[BaseModel]:  # fmt: skip
    at = T0 + timedelta(minutes=minutes)
    value = example("routing.sdr") | {
        "decision_id": decision_id,
        "lead_id": lead,
        "owner": {"id": rep, "name": rep, "email": f"{rep}@example.com", "team": "sdr-emea"},
        "strategy": strategy,
        "supersedes": supersedes,
        "received_at": (at - timedelta(seconds=2)).isoformat(),
        "decided_at": at.isoformat(),
        "stored_at": at.isoformat(),
        "sla_due_at": (at + timedelta(minutes=5)).isoformat(),
        "speed_to_lead_ms": 2000,
    }
    return Message(ROUTING_SDR, 0, 0, lead.encode(), RoutingDecision.model_validate(value))


def nurture(lead: str, decision_id: str, minutes: float) -> Message[BaseModel]:
    at = T0 + timedelta(minutes=minutes)
    value = json.loads((EXAMPLES / "routing.nurture.json").read_text())[0] | {
        "decision_id": decision_id,
        "lead_id": lead,
        "received_at": at.isoformat(),
        "decided_at": at.isoformat(),
        "stored_at": at.isoformat(),
    }
    return Message(ROUTING_NURTURE, 0, 0, lead.encode(), RoutingDecision.model_validate(value))


def feedback(feedback_id: str, minutes: float, *, lead: str | None = None,
             email: str | None = None, outcome: str = "accepted") -> Message[BaseModel]:  # fmt: skip
    value = {"feedback_id": feedback_id, "lead_id": lead, "email": email, "outcome": outcome,
             "at": (T0 + timedelta(minutes=minutes)).isoformat()}  # fmt: skip
    return Message(CRM_FEEDBACK, 0, 0, b"k", CrmFeedback.model_validate(value))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def apply(sessions: async_sessionmaker[AsyncSession], *batch: Message[BaseModel]) -> None:
    async with unit_of_work(sessions) as session:
        await ReadModelHandler()(batch, session)


async def tables(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the read model holds, table by table, in a fixed order."""
    found = {}
    for table in ("leads", "stage_changes", "decisions", "feedback", "funnel",
                  "stage_durations", "stage_flows", "speed", "sla_outcomes"):  # fmt: skip
        rows = await db.fetch(f"SELECT * FROM console.{table}")  # literal table names
        found[table] = sorted(tuple(str(v) for v in row.values()) for row in rows)
    return found


async def recomputed(sessions: async_sessionmaker[AsyncSession], lead_ids: list[str]) -> Share:
    async with sessions() as session:
        records = await repository.load_leads(session, lead_ids=lead_ids, emails=[])
    total = Share()
    for record in records:
        total.add(share_of(record))
    return total


async def stored_counters(db: asyncpg.Connection) -> dict[tuple[str, str, str], tuple[int, int]]:
    rows = await db.fetch(
        "SELECT cohort_day::text, grade, stage, now, reached FROM console.funnel"
        " WHERE now <> 0 OR reached <> 0"
    )
    return {(r["cohort_day"], r["grade"], r["stage"]): (r["now"], r["reached"]) for r in rows}


def expected_counters(share: Share) -> dict[tuple[str, str, str], tuple[int, int]]:
    keys = set(share.now) | set(share.reached)
    return {
        (day.isoformat(), dims.grade, stage.value): (share.now.get((day, dims, stage), 0),
                                                     share.reached.get((day, dims, stage), 0))
        for day, dims, stage in keys
    }  # fmt: skip


ROLLUPS = (
    # (rollup, the same sums from the counters per day and dimensions, how many counters)
    ("SELECT cohort_day, stage, now, reached FROM console.funnel_days",
     "SELECT cohort_day, stage, sum(now), sum(reached) FROM console.funnel GROUP BY 1, 2", 2),
    ("SELECT cohort_day, stage, bucket, leads FROM console.stage_duration_days",
     "SELECT cohort_day, stage, bucket, sum(leads) FROM console.stage_durations GROUP BY 1, 2, 3",
     1),
    ("SELECT day, stage, entered, exited FROM console.stage_flow_days",
     "SELECT day, stage, sum(entered), sum(exited) FROM console.stage_flows GROUP BY 1, 2", 2),
    ("SELECT grade, stage, sum(leads) FROM console.stage_now GROUP BY 1, 2",
     "SELECT grade, stage, sum(now) FROM console.funnel GROUP BY 1, 2", 1),
    ("SELECT day, measure, bucket, leads FROM console.speed_days",
     "SELECT day, measure, bucket, sum(leads) FROM console.speed GROUP BY 1, 2, 3", 1),
    ("SELECT month, rep, measure, bucket, leads FROM console.speed_months",
     "SELECT date_trunc('month', day)::date, rep, measure, bucket, sum(leads)"
     " FROM console.speed GROUP BY 1, 2, 3, 4", 1),
)  # fmt: skip


async def rollups_agree(db: asyncpg.Connection) -> bool:
    """Each rollup holds the sums of the counters it rolls up (rows of zeros aside)."""
    for rollup, sums, counters in ROLLUPS:
        kept = {tuple(row) for row in await db.fetch(rollup) if any(row[-counters:])}
        summed = {tuple(row) for row in await db.fetch(sums) if any(row[-counters:])}
        assert kept == summed, rollup
    return True


async def test_the_counters_equal_a_recomputation_and_a_repeat_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    story = [
        change("a", 1, "anonymous", "known", 0),
        change("b", 1, "anonymous", "known", 1, grade="C"),
        change("a", 2, "known", "mql", 30),
        scored("b", 40, "B"),  # b's grade changes: its counters move to B
        change("c", 1, "anonymous", "lead", 50),
        change("a", 3, "mql", "sql", 90),
        change("c", 2, "lead", "customer", 24 * 60),
    ]
    await apply(sessions, *story[:3])
    await apply(sessions, *story[3:])
    counters = await stored_counters(db)
    assert counters == expected_counters(await recomputed(sessions, ["a", "b", "c"]))
    assert counters[(DAY.isoformat(), "B", "known")] == (1, 1)
    assert (DAY.isoformat(), "C", "known") not in counters
    assert await rollups_agree(db)
    before = await tables(db)

    await apply(sessions, *story)  # every message again, as a producer's retry would send it
    assert await tables(db) == before

    async with sessions() as session:
        page = await queries.funnel_page(
            session, queries.CohortFilter(since=DAY, until=DAY + timedelta(days=1))
        )
    by_stage = {row.stage: row for row in page.funnel.stages}
    assert page.funnel.leads == 3
    # c went from anonymous to lead, then to customer: it passed known, mql, sql and sqo
    assert (by_stage[Stage.KNOWN].reached, by_stage[Stage.MQL].reached) == (3, 2)
    assert (by_stage[Stage.SQO].reached, by_stage[Stage.CUSTOMER].reached) == (1, 1)
    # a's stay in mql lasted an hour (within the histogram's 4.5%)
    assert by_stage[Stage.MQL].median_s == pytest.approx(3600, rel=0.045)
    assert page.all_time_now == {Stage.KNOWN: 1, Stage.SQL: 1, Stage.CUSTOMER: 1}


async def test_speed_to_lead_and_sla_outcomes_follow_decisions_and_crm_reports(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    email = "x@northwind-logistics.com"
    await apply(
        sessions, change("x", 1, "known", "mql", 0, email=email), change("y", 1, "known", "mql", 0)
    )
    await apply(
        sessions,
        nurture("x", "n-x", 0),
        decision("x", "d-x", 0),  # same time as the nurture decision: the sdr one is current
        decision("y", "d-y", 0, rep="rep-alan"),
    )
    # y's rep does not accept in time: the router reassigns; x is accepted, by email, in time.
    await apply(
        sessions,
        decision("y", "d-y2", 6, rep="rep-ada", supersedes="d-y", strategy="sla_reassigned"),
        feedback("f-x", 3, email=email.upper()),  # a CRM's own spelling of the address
        feedback("f-x", 3, email=email),  # the CRM sends its report twice
    )
    async with sessions() as session:
        page = await queries.speed_page(session, since=DAY, until=DAY, team=None)
    reps = {line.rep: line for line in page.by_rep}
    assert reps["rep-grace"].decision.leads == 1
    assert reps["rep-grace"].acceptance.leads == 1
    assert reps["rep-grace"].acceptance.p50 == pytest.approx(3 * 60_000 + 2000, rel=0.045)
    assert reps["rep-grace"].sla == {"met": 1, "breached": 0, "reassigned": 0, "escalated": 0}
    assert reps["rep-alan"].sla == {"met": 0, "breached": 1, "reassigned": 1, "escalated": 0}
    assert "rep-ada" not in reps, "a reassignment is not a new response"
    open_decisions = await db.fetch(
        "SELECT decision_id FROM console.decisions WHERE closed_at IS NULL ORDER BY decision_id"
    )
    assert [row["decision_id"] for row in open_decisions] == ["d-y2"]
    assert await db.fetchval("SELECT count(*) FROM console.feedback") == 1
    assert page.by_day[0][0] == date(2026, 11, 2)
    assert await rollups_agree(db)
    # A period holding the whole of November reads the rep's figures from the monthly counters.
    async with sessions() as session:
        autumn = await queries.speed_page(
            session, since=date(2026, 10, 20), until=date(2026, 12, 5), team=None
        )
        team = await queries.speed_page(
            session, since=date(2026, 10, 20), until=date(2026, 12, 5), team="sdr-emea"
        )
        year = await queries.speed_page(
            session, since=date(2026, 1, 1), until=date(2026, 12, 31), team=None
        )
    assert autumn.by_rep == page.by_rep
    assert autumn.by_day == page.by_day
    assert team.by_rep == page.by_rep
    # A year is shown per week: 2026-11-02 is a Monday, the week holds the same figures.
    assert (year.per, year.by_day, year.by_rep) == ("week", page.by_day, page.by_rep)
