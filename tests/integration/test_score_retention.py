"""score keeps only what is needed, against the real PostgreSQL: housekeeping forgets the history
rows past `LEADFLOW_SCORE_HISTORY_RETENTION_DAYS` (by event time) and the erased leads' records
past `LEADFLOW_SCORE_ERASED_LEADS_RETENTION_DAYS`, in bounded batches, through the BRIN index on
`history.at` (the plan and the pages it reads), one replica at a time, never waiting for a
vacuum; the BRIN ranges it deletes from describe the rows left afterwards. What stays works on
what is left: a message past retention that arrives again is not counted twice, and a lead none
of whose messages is left keeps its fit and what it is through a rescore and a simulation."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import yaml
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import housekeeping as housekeeping_module
from services.score.config import ScoreSettings
from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.handler import ScoreHandler
from services.score.housekeeping import (
    BACKLOG_PAUSE_S,
    FORGET_HISTORY,
    HOUSEKEEPING_LOCK,
    PLAN_BY_INDEX,
    housekeeping,
    housekeeping_round,
)
from services.score.lookups import simulate_stored
from services.score.rules_versions import pinned
from shared.consumer import Message
from shared.contracts import EnrichedEvent, ScoreCommand
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import EVENTS_ENRICHED, SCORE_COMMANDS

DAY_S = 86400.0
LIVE = load_rules(DEFAULT_RULES_FILE)
PAGES_PER_RANGE = 128  # BRIN's default, as migration 0011 leaves it


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def add_history(db: asyncpg.Connection, rows: Sequence[tuple[str, str, float]]) -> None:
    """History rows (lead, message, days before now), each with a ledger line."""
    await db.executemany(
        "INSERT INTO score.history (lead_id, message_id, at, behaviour, facts) "
        "VALUES ($1, $2, now() - $3 * interval '1 day', true, '{\"type\": \"page\"}')",
        rows,
    )
    await db.executemany(
        "INSERT INTO score.ledger (lead_id, message_id, rule_id, points, rule_version, "
        "event_time) VALUES ($1, $2, 'pricing-page', 15, 'v1', now() - $3 * interval '1 day')",
        rows,
    )


async def add_erased(db: asyncpg.Connection, leads: Sequence[tuple[str, float]]) -> None:
    await db.executemany(
        "INSERT INTO score.erased_leads (lead_digest, erased_at) "
        "VALUES ($1, now() - $2 * interval '1 day')",
        [(hashlib.sha256(lead.encode()).digest(), days) for lead, days in leads],
    )


async def messages_kept(db: asyncpg.Connection, table: str = "history") -> list[str]:
    query = {
        "history": "SELECT message_id FROM score.history ORDER BY message_id",
        "ledger": "SELECT message_id FROM score.ledger ORDER BY message_id",
    }[table]
    return [row["message_id"] for row in await db.fetch(query)]


async def round_of(
    sessions: async_sessionmaker[AsyncSession], **limits: int
) -> housekeeping_module.Round:
    return await housekeeping_round(
        sessions, history_retention_days=400, erased_leads_retention_days=45, **limits
    )


# --- what goes, what stays ------------------------------------------------------------------


async def test_history_and_erased_leads_past_their_retention_are_forgotten(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await add_history(db, [("a", "a-new", 1), ("a", "a-399", 399), ("a", "a-401", 401),
                           ("b", "b-500", 500), ("b", "b-800", 800), ("c", "c-900", 900),
                           ("c", "c-2000", 2000), ("c", "c-30", 30)])  # fmt: skip
    await add_erased(db, [("lead-44", 44), ("lead-46", 46), ("lead-400", 400)])

    # batches of 2 rows: five past retention take three batches
    done = await round_of(sessions, batch=2)

    assert (done.history, done.erased_leads, done.more, done.skipped) == (5, 2, False, False)
    assert await messages_kept(db) == ["a-399", "a-new", "c-30"]
    # the ledger stays: the explanation of the score, no fact of the person
    assert len(await messages_kept(db, "ledger")) == 8
    erased = await db.fetch("SELECT lead_digest FROM score.erased_leads")
    assert [bytes(row["lead_digest"]) for row in erased] == [hashlib.sha256(b"lead-44").digest()]

    again = await round_of(sessions, batch=2)
    assert (again.history, again.erased_leads, again.more) == (0, 0, False)
    assert await messages_kept(db) == ["a-399", "a-new", "c-30"]


async def test_a_round_stops_after_its_batches_and_the_next_comes_sooner(
    sessions: async_sessionmaker[AsyncSession],
    db: asyncpg.Connection,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await add_history(db, [("a", f"old-{n}", 500 + n) for n in range(5)] + [("a", "new", 1)])
    settings = ScoreSettings(database=DatabaseSettings(url=SecretStr(database_url)))
    assert (settings.history_retention_days, settings.erased_leads_retention_days) == (400, 45)
    assert settings.housekeeping_interval_s == 3600
    monkeypatch.setattr(housekeeping_module, "HISTORY_BATCH", 2)
    monkeypatch.setattr(housekeeping_module, "BATCHES_PER_ROUND", 2)

    assert await housekeeping(sessions=sessions, settings=settings) == BACKLOG_PAUSE_S
    assert len(await messages_kept(db)) == 2  # four of five deleted: the round's two batches
    assert await housekeeping(sessions=sessions, settings=settings) == 3600
    assert await messages_kept(db) == ["new"]


async def test_one_replica_at_a_time_and_never_waiting_for_a_vacuum(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await add_history(db, [("a", "old", 500), ("a", "new", 1)])
    await add_erased(db, [("lead-46", 46)])

    async with db.transaction():  # another replica's round
        await db.execute("SELECT pg_advisory_xact_lock($1, $2)", *HOUSEKEEPING_LOCK)
        done = await asyncio.wait_for(round_of(sessions), timeout=10)
    assert done.skipped
    assert (done.history, done.erased_leads) == (0, 0)
    assert await messages_kept(db) == ["new", "old"]

    async with db.transaction():  # (auto)vacuum holds the lock the BRIN upkeep takes
        await db.execute("LOCK TABLE score.history IN SHARE UPDATE EXCLUSIVE MODE")
        done = await asyncio.wait_for(round_of(sessions), timeout=10)
    assert (done.history, done.erased_leads, done.more) == (0, 1, True)
    assert await messages_kept(db) == ["new", "old"]

    done = await round_of(sessions)
    assert (done.history, done.more) == (1, False)
    assert await messages_kept(db) == ["new"]


# --- through the BRIN index, never the whole table -----------------------------------------


async def fill_history(db: asyncpg.Connection, *, rows: int, first_days_ago: float) -> None:
    """`rows` history rows in event-time order, from `first_days_ago` up to now, as they arrive
    (facts of a typical size), then the BRIN ranges summarized (as each round begins)."""
    await db.execute(
        """
        INSERT INTO score.history (lead_id, message_id, at, behaviour, facts)
        SELECT 'lead-' || (n % 5000), 'm-' || n,
               now() - ($2 * interval '1 day') * (1 - n::float8 / $1), true,
               jsonb_build_object('type', 'page', 'page.path', '/pricing/' || n,
                                  'context.locale', 'en-US', 'profile.seniority', 'vp',
                                  'firmographics.industry', 'Industrial Automation')
          FROM generate_series(1, $1) AS n
        """,
        rows,
        first_days_ago,
    )
    await db.execute("SELECT brin_summarize_new_values('score.history_at_brin'::regclass)")
    await db.execute("ANALYZE score.history")


def heap_blocks(plan: str) -> int:
    """The table pages a plan's bitmap heap scans read (0: none)."""
    lines = [line for line in plan.splitlines() if "Heap Blocks:" in line]
    return sum(int(n) for line in lines for n in re.findall(r"(?:exact|lossy)=(\d+)", line))


async def test_the_delete_reads_only_the_ranges_that_hold_rows_past_retention(
    db: asyncpg.Connection,
) -> None:
    # 100,000 rows over 401 days: about 250 past a 400-day retention, at the table's start
    await fill_history(db, rows=100_000, first_days_ago=401)
    pages = await db.fetchval("SELECT relpages FROM pg_class WHERE oid = 'score.history'::regclass")
    assert pages > 10 * PAGES_PER_RANGE

    tx = db.transaction()
    await tx.start()
    try:
        await db.execute(PLAN_BY_INDEX)
        plan = "\n".join(
            row[0]
            for row in await db.fetch(
                "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + FORGET_HISTORY, 400 * DAY_S, 5000
            )
        )
    finally:
        await tx.rollback()
    print(plan)  # the report's evidence (pytest -s)

    assert "Bitmap Index Scan on history_at_brin" in plan
    assert re.search(r"Tid Scan on history", plan)
    assert "Seq Scan" not in plan
    assert re.search(r"Delete on history .*rows=2\d\d", plan)  # about 250 rows deleted
    # one or two ranges read (the rows past retention, and the range they end in), of 20 or so
    assert 0 < heap_blocks(plan) <= 2 * PAGES_PER_RANGE < pages


async def test_the_ranges_a_round_deleted_from_describe_the_rows_left_after_the_next(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    # 30,000 rows over 600 days: a third past retention, the table's first ranges
    await fill_history(db, rows=30_000, first_days_ago=600)
    first = await round_of(sessions)
    assert (first.history, first.more) == (10_000, False)

    second = await round_of(sessions)  # summarizes the ranges the first one deleted from
    assert second.history == 0
    assert second.summarized >= 2

    # Nothing is past retention: no range may claim a row that is (a summary only widens:
    # without the upkeep, the ranges emptied above would still claim their deleted rows, and
    # every round would read them again, then, after a retention period, the whole table).
    async with db.transaction():
        await db.execute(PLAN_BY_INDEX)
        plan = "\n".join(
            row[0]
            for row in await db.fetch(
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT ctid FROM score.history "
                "WHERE at < now() - make_interval(secs => $1)",
                400 * DAY_S,
            )
        )
    assert "Bitmap Index Scan on history_at_brin" in plan
    assert heap_blocks(plan) == 0, plan


# --- what is left still works ---------------------------------------------------------------


def visit(lead: str, message_id: str, at: datetime) -> Message[BaseModel]:
    """A VP looks at pricing (fit: vp 25; behaviour: pricing-page 15, engaged)."""
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": lead, "source": "website", "identified": True,
         "type": "page", "properties": {"path": "/pricing"}, "timestamp": at, "received_at": at,
         "profile": {"email": f"{lead}@northwind.io", "seniority": "vp"}}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, 0, lead.encode(), value)


def rescore(lead: str, version: str) -> Message[BaseModel]:
    command = ScoreCommand(command_id=f"rescore:{version}:{lead}", kind="rescore", lead_id=lead,
                           at=datetime.now(UTC))  # fmt: skip
    return Message(SCORE_COMMANDS, 0, 0, lead.encode(), command)


def rules_with(version: str, **points: int) -> RuleSet:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = version
    for rule in document["rules"]:
        rule["points"] = points.get(rule["id"].replace("-", "_"), rule["points"])
    return RuleSet.model_validate(document)


async def ledger_of(db: asyncpg.Connection, lead: str) -> list[tuple[Any, ...]]:
    rows = await db.fetch(
        "SELECT message_id, rule_id, kind, points FROM score.ledger WHERE lead_id = $1 "
        "ORDER BY message_id, rule_id",
        lead,
    )
    return [tuple(row) for row in rows]


async def test_a_message_past_retention_that_arrives_again_counts_once(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """A backfill of messages from 500 days ago, posted twice: the second time their history
    rows are gone, and their ledger lines say they were scored."""

    async def handle(*messages: Message[BaseModel]) -> None:
        async with unit_of_work(sessions) as session:
            await ScoreHandler(pinned(LIVE))(messages, session)

    long_ago = datetime.now(UTC) - timedelta(days=500)
    await handle(visit("ada", "ada-1", long_ago), visit("ada", "ada-2", long_ago))
    before = await ledger_of(db, "ada")
    assert ("ada-1", "pricing-page", "behaviour", 15) in before
    assert (await round_of(sessions)).history == 2

    await handle(visit("ada", "ada-1", long_ago))  # alone in its batch
    await handle(visit("ada", "ada-2", long_ago), visit("ada", "ada-3", long_ago))

    after = await ledger_of(db, "ada")
    assert after == [*before, ("ada-3", "pricing-page", "behaviour", 15)]
    assert await messages_kept(db) == ["ada-3"]  # the new one only, until the next round


async def test_a_lead_whose_messages_are_all_past_retention_keeps_its_fit_and_what_it_is(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    async def handle(rules: RuleSet, *messages: Message[BaseModel]) -> None:
        async with unit_of_work(sessions) as session:
            await ScoreHandler(pinned(rules))(messages, session)

    await handle(LIVE, visit("ada", "ada-1", datetime.now(UTC) - timedelta(days=500)))
    lead = await db.fetchrow("SELECT fit, identified, engaged FROM score.leads WHERE lead_id='ada'")
    assert tuple(lead) == (25, True, True)
    assert (await round_of(sessions)).history == 1
    assert await messages_kept(db) == []

    # A simulation compares the lead on its kept picture: a candidate giving VPs 35 moves it.
    candidate = rules_with("test-vp-35", vp=35)
    summary = await simulate_stored(sessions, live=LIVE, candidate=candidate, at=datetime.now(UTC))
    assert (summary.leads, summary.scores_changed, summary.grades_changed) == (1, 1, 0)

    # A rescore under new rules: its fit from the picture score kept, still identified and
    # engaged; its behaviour, 500 days old, was worth nothing any more and is gone.
    await handle(candidate, rescore("ada", candidate.version))
    lead = await db.fetchrow(
        "SELECT fit, behaviour, identified, engaged, rule_version FROM score.leads "
        "WHERE lead_id = 'ada'"
    )
    assert tuple(lead) == (35, 0, True, True, "test-vp-35")
    assert await ledger_of(db, "ada") == [("rescore:test-vp-35:ada:picture", "vp", "fit", 35)]
