"""A process's connections to PostgreSQL are bounded by its settings: the deployment's
connection budget (deploy/README.md, "Scale") is computed from them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.db import create_engine
from shared.settings import DatabaseSettings

URL = SecretStr("postgresql+asyncpg://leadflow:secret@localhost:5432/leadflow")


async def test_the_pool_holds_at_most_pool_size_plus_max_overflow() -> None:
    engine = create_engine(
        DatabaseSettings(url=URL, pool_size=4, max_overflow=1), application_name="test"
    )
    try:
        pool = engine.sync_engine.pool
        assert (pool.size(), pool._max_overflow) == (4, 1)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


def test_the_overflow_is_small_by_default_and_set_by_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_MAX_OVERFLOW", "3")
    assert DatabaseSettings(url=URL).max_overflow == 3
    monkeypatch.delenv("LEADFLOW_DATABASE_MAX_OVERFLOW")
    assert DatabaseSettings(url=URL).max_overflow == 2
