"""The database: one async engine per process, a unit-of-work helper, and the one way to run SQL.

Every write a service makes goes through `unit_of_work`: one transaction, committed when the
block ends normally and rolled back when it raises. HTTP handlers, consumer handlers, companions
and operator commands use the same helper.

The SQL convention, for every repository (hot path or not):
- A repository function takes the unit of work's `AsyncSession` first and reads as a sentence
  (`get_lead_by_email(session, email)`); it runs literal SQL through `fetch`, `fetchrow`,
  `fetchval` and `execute` below, with asyncpg's positional parameters (`$1`, `$2`, ...), on
  the session's own transaction. No `sqlalchemy.text`, no `:name` parameters: one style, and
  the one that costs nothing per row (asyncpg encodes and decodes in C; SQLAlchemy's result
  processing was a visible share of each consumer's CPU).
- Columns are read by their full names (`row["lead_id"]`); SQL aliases are full words.
- jsonb travels as Python values one way only: a jsonb *parameter* is a JSON text (`json_document`
  builds it, one document per batch), a jsonb *result* arrives decoded (the codec is registered
  once, on the engine: `create_engine`). Nobody parses or patches jsonb by hand.
- Batches travel as one JSON document (`json_document`, read with `jsonb_to_recordset`) or as
  arrays (`unnest($1::text[])`); never one statement per row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from shared.settings import DatabaseSettings


def create_engine(settings: DatabaseSettings, *, application_name: str) -> AsyncEngine:
    """An asyncpg engine named after the service (visible in `pg_stat_activity`).

    SQLAlchemy registers the json/jsonb codecs on every asyncpg connection it opens; these
    serialisers make them orjson's, so jsonb results arrive as Python values in C speed, on
    statements sent through the session and through `fetch`/`execute` alike."""
    return create_async_engine(
        settings.url.get_secret_value(),
        json_serializer=json_document,
        json_deserializer=orjson.loads,
        pool_size=settings.pool_size,
        # Bounded (SQLAlchemy's default is 10): the replicas' sum must fit max_connections.
        max_overflow=settings.max_overflow,
        pool_pre_ping=True,
        connect_args={
            "server_settings": {
                "application_name": application_name,
                "statement_timeout": str(settings.statement_timeout_ms),
            },
            "timeout": 5,
        },
    )


async def listen(
    settings: DatabaseSettings, channel: str, on_notice: Callable[[str], None], *, name: str
) -> asyncpg.Connection:
    """A connection of its own (not the pool's: LISTEN holds it for good) listening on
    `channel`: `on_notice(payload)` for each NOTIFY, as the notifying transaction commits. The
    caller closes it; one that closed (the server went away) is seen with `is_closed()`."""
    url = make_url(settings.url.get_secret_value()).set(drivername="postgresql")
    connection = await asyncpg.connect(
        url.render_as_string(hide_password=False),
        server_settings={"application_name": name},
        timeout=5,
    )
    await connection.add_listener(channel, lambda *notice: on_notice(notice[3]))
    return connection


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on normal exit, roll back (and re-raise) on any exception."""
    async with sessions() as session, session.begin():
        yield session


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, with the session's transaction begun on it: for
    hot-path batch statements sent to asyncpg directly (unnest arrays, one statement per table
    and batch, without SQLAlchemy's per-row parameter work), inside the batch's transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: if nothing ran
    yet, the adapter is asked to send its BEGIN now (`_begin`), so that statements sent here
    never run outside the transaction (they commit or roll back with the session).

    Looked up once per transaction of the session and kept in `session.info`: a lookup goes
    through the session, its connection and the raw connection, each through SQLAlchemy's
    greenlets, and a batch sends several statements (in score, 8+ lookups per batch were ~10 %
    of its client CPU). A new transaction of the session (after a commit or a rollback) looks
    it up again."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_DRIVER_KEY)
    if kept is not None and transaction is not None and kept[0] is transaction:
        driver: asyncpg.Connection = kept[1]
        if driver.is_in_transaction():
            return driver
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if not driver.is_in_transaction():
        await _begin(raw.dbapi_connection)
    session.info[_DRIVER_KEY] = (session.sync_session.get_transaction(), driver)
    return driver


async def _begin(adapted: Any) -> None:
    """BEGIN alone, as SQLAlchemy's asyncpg adapter sends it ahead of a transaction's first
    statement (its own `_start_transaction`, under its own lock: private, hence SQLAlchemy's
    exact pin; tests/integration/test_db_driver_connection.py checks that the session commits
    and rolls back what is sent after it). A trivial statement through the session began the
    transaction too, for one round trip more, and every consumer batch would pay it: the
    runner's offset lock, each batch's first statement, comes through here."""
    async with adapted._execute_mutex:
        if adapted._transaction is None:
            await adapted._start_transaction()


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[asyncpg.Record]:
    """The rows of `sql` (with `$n` parameters), inside the session's transaction."""
    return list(await (await driver_connection(session)).fetch(sql, *args))


async def fetchrow(session: AsyncSession, sql: str, *args: Any) -> asyncpg.Record | None:
    """The first row of `sql`, or None, inside the session's transaction."""
    row: asyncpg.Record | None = await (await driver_connection(session)).fetchrow(sql, *args)
    return row


async def fetchval(session: AsyncSession, sql: str, *args: Any) -> Any:
    """The first column of the first row of `sql` (None without a row)."""
    return await (await driver_connection(session)).fetchval(sql, *args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> int:
    """Run `sql` inside the session's transaction; returns the rows it touched (the count of
    its command tag: INSERT, UPDATE, DELETE; 0 for other commands)."""
    status: str = await (await driver_connection(session)).execute(sql, *args)
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def json_document(value: Any) -> str:
    """A batch statement's rows (or ids, or pairs) as ONE JSON parameter, read in SQL with
    `jsonb_to_recordset` / `jsonb_array_elements`, instead of one array parameter per column.

    asyncpg encodes an array element by element in Python (~1 us each, checked against abstract
    classes): a visible share of each consumer's CPU in py-spy. orjson builds the document in C
    and PostgreSQL parses it once; nested JSON (`orjson.Fragment`, dicts) lands in jsonb columns
    as it is. Measured, 30-row upserts of score's leads: 26 -> 12 us client CPU and 65 -> 56 us
    wall per row. Dataclasses become objects keyed by field name, times RFC 3339 with their
    offset; anything JSON has no type for is written as its `str`."""
    return orjson.dumps(value, default=str).decode()


# `session.info` key of the asyncpg connection found for the session's current transaction.
_DRIVER_KEY = "shared.db.driver_connection"
