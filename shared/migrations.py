"""Alembic migrations, one history per service in its own PostgreSQL schema.

Each service keeps its migrations in `services/<name>/migrations/` with an `env.py` that calls
`run_env`; `upgrade_to_head` is what `python -m services.<name> migrate` runs (and the
Kubernetes migration Job). The version table lives in the service's schema, so histories never
collide.

Migrations run while the previous version serves (deploy/README.md, "Upgrade"), so they must
not stall live traffic:
- each waits at most `LOCK_TIMEOUT` for a lock (an `ALTER TABLE` queued behind a long
  transaction would otherwise hold every later reader and writer of the table in the queue
  behind it); one that times out is rolled back and the upgrade tried again, with backoff, for
  up to `LOCK_RETRY_FOR_S`. Each migration commits on its own, so a retry resumes at the one
  that timed out;
- an index on a live table is built with `create_index_concurrently` /
  `replace_index_concurrently` (writes go on while it builds), never a plain `CREATE INDEX`.
A service does not start on a schema older than its code (`wait_for_schema`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context, op
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from shared.config_versions import checked_schema
from shared.consumer.failures import is_transient

log = logging.getLogger(__name__)

LOCK_TIMEOUT = "5s"
LOCK_RETRY_FOR_S = 600.0  # within the migrate Job's activeDeadlineSeconds (900)
LOCK_NOT_AVAILABLE = "55P03"


def alembic_config(*, migrations_dir: Path, schema: str, database_url: str = "") -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # `%` is alembic's interpolation character; a password may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade_to_head(
    *,
    migrations_dir: Path,
    schema: str,
    database_url: str,
    lock_timeout: str = LOCK_TIMEOUT,
    retry_for_s: float = LOCK_RETRY_FOR_S,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Bring the service's schema to the newest revision. Idempotent; blocks until done.

    A migration that waited longer than `lock_timeout` for a lock is tried again (from that
    migration) after a backoff of 1 s doubling to 30 s, for `retry_for_s`; then the lock error
    propagates. Returns the number of attempts."""
    config = alembic_config(migrations_dir=migrations_dir, schema=schema, database_url=database_url)
    config.attributes["lock_timeout"] = lock_timeout
    started = time.monotonic()
    backoff = 1.0
    attempt = 1
    while True:
        try:
            command.upgrade(config, "head")
            return attempt
        except DBAPIError as exc:
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE or time.monotonic() - started > retry_for_s:
                raise
            log.warning(
                "schema %s: a migration waited more than %s for a lock held by live traffic;"
                " trying again in %.0fs (attempt %d)",
                schema,
                lock_timeout,
                backoff,
                attempt + 1,
            )
        sleep(backoff)
        backoff = min(backoff * 2, 30.0)
        attempt += 1


def run_env(*, target_metadata: MetaData | None = None) -> None:
    """The body of every service's `env.py` (online mode only: migrations need a database)."""
    config = context.config
    schema: str = config.attributes["schema"]
    lock_timeout: str = config.attributes.get("lock_timeout", LOCK_TIMEOUT)
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None

    def run(connection: Connection) -> None:
        # Session settings: they hold for every migration's transaction and autocommit block.
        connection.execute(
            text("SELECT set_config('lock_timeout', :value, false)"), {"value": lock_timeout}
        )
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    asyncio.run(main())


def create_index_concurrently(name: str, definition: str, *, schema: str) -> None:
    """Alembic operation: `CREATE INDEX CONCURRENTLY name <definition>` (e.g. `ON s.t (c)`,
    `ON s.t USING brin (c)`, a `WHERE`), outside the migration's transaction, as PostgreSQL
    requires. Writes to the table go on while it builds. An invalid index left by an earlier
    attempt that failed half-way is dropped first; a valid one is kept (re-running is safe).
    `name` and `schema` must be plain identifiers (they are formatted in; ValueError if not);
    `definition` is the migration's own literal DDL."""
    name, schema = checked_schema(name), checked_schema(schema)
    with op.get_context().autocommit_block():
        op.execute(
            f"""
            DO $$ BEGIN
              IF EXISTS (SELECT FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                          JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = '{schema}' AND c.relname = '{name}'
                           AND NOT i.indisvalid) THEN
                EXECUTE 'DROP INDEX "{schema}"."{name}"';
              END IF;
            END $$
            """
        )
        op.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" {definition}')


def drop_index_concurrently(name: str, *, schema: str) -> None:
    """Alembic operation: `DROP INDEX CONCURRENTLY IF EXISTS`, outside the transaction.
    `name` and `schema` must be plain identifiers (ValueError if not)."""
    name, schema = checked_schema(name), checked_schema(schema)
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{schema}"."{name}"')


def replace_index_concurrently(name: str, definition: str, *, schema: str) -> None:
    """Alembic operation: index `name` becomes `definition`, without blocking writes: built
    concurrently under a temporary name, the old one dropped concurrently, the new one renamed
    (a brief lock on the index only). Safe to run again after a failure at any step."""
    name, schema = checked_schema(name), checked_schema(schema)
    building = checked_schema(f"{name}_new")
    create_index_concurrently(building, definition, schema=schema)
    drop_index_concurrently(name, schema=schema)
    op.execute(f'ALTER INDEX "{schema}"."{building}" RENAME TO "{name}"')


@dataclass(frozen=True)
class SchemaState:
    """Where a schema stands against the code's migrations."""

    current: str | None  # the schema's revision; None: never migrated
    head: str  # the newest revision the code has
    known: frozenset[str]  # every revision the code has

    @property
    def usable(self) -> bool:
        """At the code's head, or newer than the code (a rolled-back image on a schema its
        successor migrated: migrations add, so the older code still runs on it)."""
        return self.current == self.head or (
            self.current is not None and self.current not in self.known
        )

    @property
    def newer_than_code(self) -> bool:
        return self.current is not None and self.current not in self.known


def code_revisions(migrations_dir: Path, *, schema: str) -> tuple[str, frozenset[str]]:
    """The head revision and every revision of a service's migrations folder."""
    script = ScriptDirectory.from_config(
        alembic_config(migrations_dir=migrations_dir, schema=schema)
    )
    heads = script.get_heads()
    if len(heads) != 1:
        raise ValueError(f"{migrations_dir}: {len(heads)} heads, expected one")
    return heads[0], frozenset(r.revision for r in script.walk_revisions())


async def schema_revision(sessions: async_sessionmaker[AsyncSession], *, schema: str) -> str | None:
    """The revision recorded in the schema's version table; None when there is none yet."""
    async with sessions() as session:
        try:
            result = await session.execute(
                text(f'SELECT version_num FROM "{schema}".alembic_version')
            )
        except ProgrammingError:  # no version table: never migrated
            return None
        return result.scalar_one_or_none()


async def wait_for_schema(
    sessions: async_sessionmaker[AsyncSession],
    *,
    migrations_dir: Path,
    schema: str,
    wait_s: float,
    poll_s: float = 2.0,
) -> SchemaState | None:
    """Wait until the schema is usable by this code (`SchemaState.usable`): a new version's
    pods started before the migrate Job finished wait for it instead of running on the old
    schema. Returns the state once usable, or after `wait_s` (the caller refuses to start on
    a schema that is behind: the pod restarts and waits again). None: the database did not
    answer within `wait_s` (the caller starts, and rides out the outage as it always does)."""
    head, known = code_revisions(migrations_dir, schema=schema)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state: SchemaState | None = SchemaState(
                await schema_revision(sessions, schema=schema), head, known
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            state = None
        if (state is not None and state.usable) or time.monotonic() >= deadline:
            return state
        if state is None:
            log.info("schema %s: the database does not answer yet", schema)
        else:
            log.info(
                "schema %s is at %s, this version needs %s: waiting for the migrate Job",
                schema,
                state.current or "no revision",
                head,
            )
        await asyncio.sleep(poll_s)


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
