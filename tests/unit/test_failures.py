"""Which failures are transient (retry, never commit past) and which are the message's fault."""

from __future__ import annotations

import errno

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProgrammingError,
)

from shared.codec import UndecodableMessage
from shared.consumer.failures import ConcurrentUpdate, is_transient

pytestmark = pytest.mark.unit


class _DriverError(Exception):
    """What a DB-API driver raises, carrying a SQLSTATE as asyncpg's adapter does."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def _adapted(sqlstate: str) -> Exception:
    """An adapter error whose cause carries the SQLSTATE (SQLAlchemy's asyncpg dialect)."""
    adapted = Exception("adapted driver error")
    adapted.__cause__ = _DriverError(sqlstate)
    return adapted


def _caused_by(cause: BaseException) -> Exception:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise RuntimeError("handling the batch failed") from exc
    except RuntimeError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(OSError("network is unreachable"), id="OSError"),
        pytest.param(
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"), id="ConnectionRefusedError"
        ),
        pytest.param(ConnectionResetError("reset by peer"), id="ConnectionResetError"),
        pytest.param(TimeoutError(), id="TimeoutError"),
        pytest.param(KafkaConnectionError("broker down"), id="KafkaConnectionError"),
        pytest.param(KafkaTimeoutError(), id="KafkaTimeoutError"),
        pytest.param(RequestTimedOutError(), id="RequestTimedOutError"),
        pytest.param(
            OperationalError("SELECT 1", {}, Exception("server closed the connection")),
            id="sqlalchemy-OperationalError",
        ),
        pytest.param(
            InterfaceError("SELECT 1", {}, Exception("connection is closed")),
            id="sqlalchemy-InterfaceError",
        ),
        pytest.param(
            DBAPIError("UPDATE leads", {}, _DriverError("40001")), id="serialization-failure"
        ),
        pytest.param(DBAPIError("UPDATE leads", {}, _DriverError("40P01")), id="deadlock"),
        pytest.param(
            DBAPIError("UPDATE leads", {}, _adapted("55P03")), id="lock-not-available-via-adapter"
        ),
        pytest.param(
            asyncpg.exceptions.SerializationError("could not serialize access"),
            id="asyncpg-serialization",
        ),
        pytest.param(
            asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), id="asyncpg-deadlock"
        ),
        pytest.param(
            asyncpg.exceptions.AdminShutdownError("terminating connection"),
            id="asyncpg-admin-shutdown",
        ),
        pytest.param(
            asyncpg.exceptions.TooManyConnectionsError("too many clients"),
            id="asyncpg-too-many-connections",
        ),
        pytest.param(
            asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
            id="asyncpg-connection-gone",
        ),
        pytest.param(ConcurrentUpdate("lead-1 changed under us"), id="ConcurrentUpdate"),
        pytest.param(_caused_by(OSError("network is unreachable")), id="caused-by-OSError"),
        pytest.param(
            _caused_by(_caused_by(KafkaConnectionError())),
            id="caused-by-cause-KafkaConnectionError",
        ),
    ],
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ValueError("invalid literal for int()"), id="ValueError"),
        pytest.param(KeyError("lead_id"), id="KeyError"),
        pytest.param(TypeError("unsupported operand"), id="TypeError"),
        pytest.param(UndecodableMessage("not JSON"), id="UndecodableMessage"),
        pytest.param(
            IntegrityError("INSERT INTO leads", {}, _DriverError("23505")), id="unique-violation"
        ),
        pytest.param(
            DBAPIError("INSERT INTO leads", {}, _DriverError("22P02")),
            id="invalid-text-representation",
        ),
        pytest.param(
            DBAPIError("INSERT INTO leads", {}, _adapted("23503")), id="fk-violation-via-adapter"
        ),
        pytest.param(
            DBAPIError("INSERT INTO leads", {}, Exception("no sqlstate")), id="no-sqlstate"
        ),
        pytest.param(
            asyncpg.exceptions.UniqueViolationError("duplicate key"), id="asyncpg-unique-violation"
        ),
        pytest.param(
            asyncpg.exceptions.StringDataRightTruncationError("value too long"),
            id="asyncpg-too-long",
        ),
        pytest.param(_caused_by(ValueError("bad")), id="caused-by-ValueError"),
        pytest.param(RuntimeError("no cause"), id="RuntimeError"),
    ],
)
def test_not_transient(exc: BaseException) -> None:
    assert is_transient(exc) is False


def test_only_the_explicit_cause_is_followed_not_the_context() -> None:
    bug = ValueError("while handling a timeout, a bug")
    bug.__context__ = TimeoutError()

    assert is_transient(bug) is False


@pytest.mark.parametrize(
    ("orig", "transient_on_its_own"),
    [
        # Errors that are the message's fault (or a bug) on a healthy connection.
        pytest.param(_DriverError("XX000"), False, id="internal-error"),
        pytest.param(_DriverError("23505"), False, id="unique-violation"),
        pytest.param(_DriverError("22P02"), False, id="invalid-text-representation"),
        pytest.param(_adapted("23503"), False, id="fk-violation-via-adapter"),
        pytest.param(
            asyncpg.exceptions.StringDataRightTruncationError("value too long"),
            False,
            id="asyncpg-too-long",
        ),
        pytest.param(Exception("no sqlstate"), False, id="no-sqlstate"),
        pytest.param(ValueError("bad"), False, id="ValueError"),
        # Errors that are transient anyway.
        pytest.param(_DriverError("40001"), True, id="serialization-failure"),
        pytest.param(_adapted("55P03"), True, id="lock-not-available-via-adapter"),
        pytest.param(_DriverError("08006"), True, id="connection-failure"),
        pytest.param(
            asyncpg.exceptions.AdminShutdownError("terminating connection"),
            True,
            id="asyncpg-admin-shutdown",
        ),
    ],
)
@pytest.mark.parametrize(
    "wrapper",
    [DBAPIError, IntegrityError, DataError, ProgrammingError, InternalError],
    ids=lambda cls: cls.__name__,
)
def test_an_invalidated_connection_is_transient_whatever_the_error(
    orig: Exception, transient_on_its_own: bool, wrapper: type[DBAPIError]
) -> None:
    exc = wrapper("SELECT 1", {}, orig, connection_invalidated=True)

    assert is_transient(exc) is True
    assert is_transient(_caused_by(exc)) is True
    # The same error on a connection still valid: only the invalidation made it transient
    # (when it is not transient of its own).
    valid = wrapper("SELECT 1", {}, orig, connection_invalidated=False)
    assert is_transient(valid) is transient_on_its_own
