"""Migrations run while the previous version serves: they never stall live traffic behind a
lock they wait for, they rebuild indexes of live tables concurrently, and a service does not
start on a schema older than its code. On the real PostgreSQL, with enrich's migrations."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from alembic import command

from shared.db import create_engine, create_sessionmaker
from shared.migrations import alembic_config, upgrade_to_head, wait_for_schema
from shared.settings import DatabaseSettings
from tests.fixtures.infra import REPO

ENRICH = REPO / "services" / "enrich" / "migrations"


async def test_a_migration_waiting_for_a_lock_gives_way_to_traffic_and_tries_again(
    database_url: str, db: asyncpg.Connection
) -> None:
    config = alembic_config(migrations_dir=ENRICH, schema="enrich", database_url=database_url)
    await asyncio.to_thread(command.downgrade, config, "0002")
    # A long report holds a share lock on identities, which 0003's ALTER TABLE must wait for.
    report = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    transaction = report.transaction()
    await transaction.start()
    await report.fetchval("SELECT count(*) FROM enrich.identities")
    waits: list[float] = []

    def short_sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(0.1)

    upgrading = asyncio.create_task(
        asyncio.to_thread(
            upgrade_to_head,
            migrations_dir=ENRICH,
            schema="enrich",
            database_url=database_url,
            lock_timeout="200ms",
            sleep=short_sleep,
        )
    )
    try:
        # Meanwhile the hot path's statements on the table go on: a lock request queued
        # without a timeout would hold each of them until the report ends.
        until = time.monotonic() + 2.5
        reads = 0
        while time.monotonic() < until:
            await asyncio.wait_for(db.fetchval("SELECT count(*) FROM enrich.identities"), 1.0)
            reads += 1
            await asyncio.sleep(0.05)
        assert reads > 10
        assert not upgrading.done()
    finally:
        await transaction.rollback()
        await report.close()
    attempts = await asyncio.wait_for(upgrading, 60)

    assert attempts >= 2
    assert len(waits) == attempts - 1
    assert await db.fetchval("SELECT version_num FROM enrich.alembic_version") == "0005"
    indexes = {
        r["indexname"]: r["indexdef"]
        for r in await db.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'enrich'"
        )
    }
    assert "WHERE (email IS NOT NULL)" in indexes["leads_email_idx"]
    assert "USING brin (seen_at)" in indexes["seen_messages_seen_at_idx"]
    assert "USING brin (stored_at)" in indexes["anonymous_events_stored_at_idx"]
    assert "identities_lead_idx" not in indexes
    assert [name for name in indexes if name.endswith("_new")] == []
    invalid = await db.fetchval(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'enrich' AND NOT i.indisvalid"
    )
    assert invalid == 0


async def test_a_service_waits_for_its_schema_and_refuses_an_older_one(
    database_url: str, db: asyncpg.Connection
) -> None:
    config = alembic_config(migrations_dir=ENRICH, schema="enrich", database_url=database_url)
    await asyncio.to_thread(command.downgrade, config, "0004")
    engine = create_engine(DatabaseSettings(url=database_url), application_name="schema-test")
    sessions = create_sessionmaker(engine)
    try:
        behind = await wait_for_schema(
            sessions, migrations_dir=ENRICH, schema="enrich", wait_s=0.3, poll_s=0.1
        )
        assert behind is not None
        assert (behind.current, behind.head, behind.usable) == ("0004", "0005", False)

        # The migrate Job finishes while the new version's pod waits: it starts then.
        waiting = asyncio.create_task(
            wait_for_schema(sessions, migrations_dir=ENRICH, schema="enrich", wait_s=60, poll_s=0.1)
        )
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await asyncio.to_thread(command.upgrade, config, "head")
        ready = await asyncio.wait_for(waiting, 30)
        assert ready is not None
        assert (ready.current, ready.usable) == ("0005", True)

        # A rolled-back image on a schema its successor migrated: it runs (migrations add).
        await db.execute("UPDATE enrich.alembic_version SET version_num = '0006'")
        newer = await wait_for_schema(
            sessions, migrations_dir=ENRICH, schema="enrich", wait_s=0.3, poll_s=0.1
        )
        assert newer is not None
        assert (newer.usable, newer.newer_than_code) == (True, True)
    finally:
        await engine.dispose()
