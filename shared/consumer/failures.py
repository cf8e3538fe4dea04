"""Which failures are transient (retry, never commit past) and which are the message's fault."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")


class ConcurrentUpdate(Exception):
    """Another process changed the rows this batch relies on; handling it again will succeed."""


class NotReady(Exception):
    """The service cannot handle any batch yet: something it needs that no message brings is
    missing (no usable configuration version is live). Retried with backoff like an outage,
    never dead-lettered: the messages are fine, and publishing what is missing ends it."""


_TRANSIENT_SQLSTATES = {
    # A slow or contended database, not a bad message: handling the batch again succeeds once
    # the load or the competing transaction has passed (dead-lettering would lose healthy data).
    "57014",  # query_canceled (statement_timeout, or pg_cancel_backend)
    "55P03",  # lock_not_available (lock_timeout, NOWAIT)
    "40P01",  # deadlock_detected
    "40001",  # serialization_failure
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now
    "53300",  # too_many_connections
    "08000",
    "08003",
    "08006",
    "08001",
    "08004",  # connection exceptions
}


def is_transient(exc: BaseException) -> bool:
    """True for failures of the infrastructure (database, broker, network), not of a message.

    Looks through the chain of causes (`raise ... from ...`), each exception once.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _transient_itself(current):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False


def _transient_itself(exc: BaseException) -> bool:
    if isinstance(exc, ConcurrentUpdate | NotReady | OSError | asyncio.TimeoutError | TimeoutError):
        return True
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    if isinstance(exc, KafkaError):
        # A retriable broker error (leader moved, not enough replicas, ...); not one that can
        # never succeed (message too large, authorisation).
        return bool(exc.retriable)
    if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(
            getattr(exc.orig, "__cause__", None), "sqlstate", None
        )
        return sqlstate in _TRANSIENT_SQLSTATES
    if isinstance(exc, asyncpg.PostgresError):
        return getattr(exc, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return False


async def retried_while_transient(
    work: Callable[[], Awaitable[T]], *, what: str, give_up_after_s: float, wait_s: float = 2.0
) -> T:
    """`work()`, tried again every `wait_s` while it fails for a transient reason (`is_transient`:
    the database not reachable yet, a pod started before PostgreSQL), until `give_up_after_s`
    have passed; then, or on any other failure, its exception propagates. For start-up work a
    service cannot run without (adopting its configuration file), as the consumer rides out an
    outage rather than crash-looping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_after_s
    while True:
        try:
            return await work()
        except Exception as exc:
            if not is_transient(exc) or loop.time() >= deadline:
                raise
            log.warning("%s: %s; trying again in %.0fs", what, type(exc).__name__, wait_s)
        await asyncio.sleep(wait_s)
