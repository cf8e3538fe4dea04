"""A slow or contended database is transient (retried with backoff), never a message's fault:
a statement or lock timeout, a deadlock or a serialization failure must not dead-letter the
healthy message whose transaction hit it."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from shared.consumer.failures import is_transient

pytestmark = pytest.mark.unit

SLOW_DATABASE = [
    # SQLSTATE, the asyncpg exception PostgreSQL's error becomes
    pytest.param("57014", asyncpg.exceptions.QueryCanceledError, id="statement-timeout"),
    pytest.param("55P03", asyncpg.exceptions.LockNotAvailableError, id="lock-timeout"),
    pytest.param("40P01", asyncpg.exceptions.DeadlockDetectedError, id="deadlock"),
    pytest.param("40001", asyncpg.exceptions.SerializationError, id="serialization-failure"),
]


class _AdaptedError(Exception):
    """SQLAlchemy's asyncpg adapter error: the SQLSTATE copied on it, asyncpg's as its cause."""

    def __init__(self, cause: asyncpg.PostgresError) -> None:
        super().__init__(str(cause))
        self.sqlstate = cause.sqlstate
        self.__cause__ = cause


@pytest.mark.parametrize(("sqlstate", "error"), SLOW_DATABASE)
def test_a_slow_database_is_transient_from_asyncpg(
    sqlstate: str, error: type[asyncpg.PostgresError]
) -> None:
    assert error.sqlstate == sqlstate
    assert is_transient(error("canceling statement due to statement timeout")) is True


@pytest.mark.parametrize(("sqlstate", "error"), SLOW_DATABASE)
def test_a_slow_database_is_transient_through_sqlalchemy(
    sqlstate: str, error: type[asyncpg.PostgresError]
) -> None:
    cause = error("canceling statement due to statement timeout")
    wrapped = DBAPIError("SELECT pg_sleep(1)", {}, _AdaptedError(cause))

    assert is_transient(wrapped) is True


@pytest.mark.parametrize(("sqlstate", "error"), SLOW_DATABASE)
def test_a_slow_database_is_transient_when_only_the_drivers_cause_carries_it(
    sqlstate: str, error: type[asyncpg.PostgresError]
) -> None:
    adapted = Exception("adapted driver error")  # no SQLSTATE of its own
    adapted.__cause__ = error("canceling statement")

    assert is_transient(DBAPIError("SELECT pg_sleep(1)", {}, adapted)) is True
