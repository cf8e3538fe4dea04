"""Alembic migrations, one history per service in its own PostgreSQL schema.

Each service keeps its migrations in `services/<name>/migrations/` with an `env.py` that calls
`run_env`; `upgrade_to_head` is what `python -m services.<name> migrate` runs (and the
Kubernetes migration Job). The version table lives in the service's schema, so histories never
collide.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(*, migrations_dir: Path, schema: str, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # `%` is alembic's interpolation character; a password may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["schema"] = schema
    return config


def upgrade_to_head(*, migrations_dir: Path, schema: str, database_url: str) -> None:
    """Bring the service's schema to the newest revision. Idempotent; blocks until done."""
    config = alembic_config(migrations_dir=migrations_dir, schema=schema, database_url=database_url)
    command.upgrade(config, "head")


def run_env(*, target_metadata: MetaData | None = None) -> None:
    """The body of every service's `env.py` (online mode only: migrations need a database)."""
    config = context.config
    schema: str = config.attributes["schema"]
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None

    def run(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.begin() as connection:
            await connection.run_sync(run)
        await engine.dispose()

    asyncio.run(main())
