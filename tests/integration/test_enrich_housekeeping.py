"""enrich's housekeeping and re-enrichment bookkeeping against the real PostgreSQL (no broker):
message ids are kept for the dedupe window and then forgotten; failed lookups back off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich import background, repository
from services.enrich.config import EnrichSettings
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from tests.fixtures.enrich import PRIVACY_KEY


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


def settings(database_url: str) -> EnrichSettings:
    return EnrichSettings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        privacy_key=SecretStr(PRIVACY_KEY.decode()),
    )


async def test_message_ids_history_and_merges_are_kept_for_their_retention_then_forgotten(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, database_url: str
) -> None:
    await db.execute(
        """
        INSERT INTO enrich.seen_messages (message_id, seen_at) VALUES
            ('fresh', now() - interval '1 hour'),
            ('yesterday', now() - interval '25 hours'),
            ('old', now() - interval '49 hours')
        """
    )
    await db.execute(
        """
        INSERT INTO enrich.anonymous_events (lead_id, message_id, payload, stored_at) VALUES
            ('l1', 'm1', '{}', now() - interval '31 days'), ('l1', 'm2', '{}', now())
        """
    )

    await db.execute(
        """
        INSERT INTO enrich.merges (merge_id, surviving_lead_id, merged_lead_id, reason,
            history_replayed, moved_identities, merged_lead_snapshot, triggered_by, merged_at)
        VALUES ('recent', 'l1', 'l2', 'same person', false, '[]', '{}', 'm', now() - interval '179 days'),
               ('old', 'l1', 'l3', 'same person', false, '[]', '{}', 'm', now() - interval '181 days')
        """
    )

    await background.housekeeping(sessions=sessions, settings=settings(database_url))

    merges = await db.fetch("SELECT merge_id FROM enrich.merges")
    assert [r["merge_id"] for r in merges] == ["recent"]  # 180 days by default
    kept = await db.fetch("SELECT message_id FROM enrich.seen_messages ORDER BY message_id")
    assert [r["message_id"] for r in kept] == ["fresh", "yesterday"]  # 48 h by default
    history = await db.fetch("SELECT message_id FROM enrich.anonymous_events")
    assert [r["message_id"] for r in history] == ["m2"]
    async with unit_of_work(sessions) as session:
        assert await repository.claim_new_message_ids(session, ["yesterday", "old"]) == {"old"}


async def test_failed_lookups_are_leased_and_backed_off(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    async with unit_of_work(sessions) as session:
        await repository.request_enrichment(session, ["initech.com", "globex.com"])
        await repository.request_enrichment(session, ["initech.com"])  # already queued
    async with unit_of_work(sessions) as session:
        due = await repository.claim_due_domains(session, limit=10, lease_s=60)
    async with unit_of_work(sessions) as session:
        again = await repository.claim_due_domains(session, limit=10, lease_s=60)
    assert due == ["globex.com", "initech.com"]
    assert again == []  # leased: another process does not ask the vendor too

    async with unit_of_work(sessions) as session:
        for _ in range(3):
            await repository.reschedule_enrichment(
                session, domain="initech.com", error="HTTP 503", initial_s=10, max_s=25
            )
    row = await db.fetchrow(
        "SELECT attempts, last_error, extract(epoch FROM next_attempt_at - now()) AS wait"
        " FROM enrich.pending_enrichment WHERE domain = 'initech.com'"
    )
    assert (row["attempts"], row["last_error"]) == (3, "HTTP 503")
    assert 20 < row["wait"] <= 25  # 10 * 2^2 = 40, capped at 25
