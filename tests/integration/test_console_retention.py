"""The console keeps its records of erased leads only as long as they are needed, against the
real PostgreSQL: housekeeping forgets those past `LEADFLOW_CONSOLE_ERASED_LEADS_RETENTION_DAYS`
(45, never less than a topic's 31 days), keeps the newer ones (a late message about those
leads is still found erased), one replica at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console.config import ConsoleSettings
from services.console.housekeeping import HOUSEKEEPING_LOCK, housekeeping
from services.console.repository import ERASED_LEADS
from shared.db import create_engine, create_sessionmaker
from shared.privacy import lead_id_digest
from shared.settings import DatabaseSettings

ERASED = {"erased-2": 2.0, "erased-44": 44.0, "erased-46": 46.0, "erased-400": 400.0}
"""Erased leads and how many days ago each was erased."""


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


def settings(database_url: str, retention_days: float | None = None) -> ConsoleSettings:
    """The console's settings; `retention_days`: the erased leads' (None: the default)."""
    database = DatabaseSettings(url=SecretStr(database_url))
    if retention_days is None:
        return ConsoleSettings(secret_key=SecretStr("k"), database=database)
    return ConsoleSettings(
        secret_key=SecretStr("k"), database=database, erased_leads_retention_days=retention_days
    )


async def erased(db: asyncpg.Connection) -> None:
    await db.executemany(
        "INSERT INTO console.erased_leads (lead_digest, erased_at)"
        " VALUES ($1, now() - $2 * interval '1 day')",
        [(lead_id_digest(lead), days) for lead, days in ERASED.items()],
    )


async def still_erased(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    """The leads a message about which would still be dropped."""
    async with sessions() as session:
        return await ERASED_LEADS.among(session, ERASED)


async def test_the_erased_leads_records_are_forgotten_after_their_retention(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, database_url: str
) -> None:
    await erased(db)

    forgotten = await housekeeping(sessions=sessions, settings=settings(database_url))

    assert forgotten == 2
    assert await still_erased(sessions) == {"erased-2", "erased-44"}
    assert await housekeeping(sessions=sessions, settings=settings(database_url)) == 0


async def test_the_retention_is_a_setting_never_shorter_than_a_topic_keeps_a_message(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, database_url: str
) -> None:
    await erased(db)
    defaults = settings(database_url)
    assert (defaults.erased_leads_retention_days, defaults.housekeeping_interval_s) == (45, 3600)
    with pytest.raises(ValidationError, match="erased_leads_retention_days"):
        settings(database_url, retention_days=30)

    forgotten = await housekeeping(
        sessions=sessions, settings=settings(database_url, retention_days=31)
    )

    assert forgotten == 3
    assert await still_erased(sessions) == {"erased-2"}


async def test_one_replica_at_a_time(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, database_url: str
) -> None:
    await erased(db)
    await db.execute("SELECT pg_advisory_lock($1, $2)", *HOUSEKEEPING_LOCK)  # another replica

    assert await housekeeping(sessions=sessions, settings=settings(database_url)) is None
    assert await still_erased(sessions) == set(ERASED)

    await db.execute("SELECT pg_advisory_unlock($1, $2)", *HOUSEKEEPING_LOCK)
    assert await housekeeping(sessions=sessions, settings=settings(database_url)) == 2
