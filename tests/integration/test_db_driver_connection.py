"""`shared.db.driver_connection` is looked up once per transaction of a session: statements
after a commit or a rollback of the same session run in the new transaction, never in the old
one (or outside any)."""

from __future__ import annotations

import asyncpg
from pydantic import SecretStr
from sqlalchemy import text

from shared.db import create_engine, create_sessionmaker, driver_connection, fetchval
from shared.settings import DatabaseSettings


async def test_a_new_transaction_of_the_session_gets_its_own_connection_lookup(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as session:
            first = await driver_connection(session)
            assert first.is_in_transaction()
            assert await driver_connection(session) is first  # the same transaction: kept
            transaction = await first.fetchval("SELECT txid_current()")
            await session.rollback()

            again = await driver_connection(session)
            assert again.is_in_transaction()
            assert await again.fetchval("SELECT txid_current()") != transaction
            await session.execute(text("SELECT 1"))
            await session.commit()

            # A commit ends the transaction: what is sent next is in a new one, rolled back.
            driver = await driver_connection(session)
            await driver.execute("CREATE TABLE public.scratch_driver_test (x int)")
            await session.rollback()
        assert await db.fetchval("SELECT to_regclass('public.scratch_driver_test')") is None
    finally:
        await engine.dispose()


async def test_a_transactions_first_statement_costs_begin_and_itself(database_url: str) -> None:
    """The runner's offset lock opens every consumer batch's transaction through `fetch`: the
    transaction is begun by BEGIN alone, no trivial statement before the first real one."""
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sent: list[str] = []
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            raw = await (await session.connection()).get_raw_connection()
            assert raw.driver_connection is not None
            raw.driver_connection.add_query_logger(lambda query: sent.append(query.query))
            assert await fetchval(session, "SELECT 41 + 1") == 42
            assert await fetchval(session, "SELECT txid_current() = txid_current()")
    finally:
        await engine.dispose()
    assert [query.strip() for query in sent] == [
        "BEGIN;",
        "SELECT 41 + 1",
        "SELECT txid_current() = txid_current()",
        "COMMIT;",
    ]
