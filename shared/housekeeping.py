"""Housekeeping: deleting (or scrubbing) what is past its retention, a bounded round at a time.

Every service's retention (docs/privacy.md, "Retention") works the same way: a statement that
handles at most `batch` rows past their time, found by an index on that time, runs in its own
short transaction again and again until a round handles fewer than `batch` rows. So no
statement scans a whole table or holds its locks for long, and a consumer working beside it
waits for at most one round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import unit_of_work


async def in_rounds(
    sessions: async_sessionmaker[AsyncSession],
    step: Callable[[AsyncSession], Awaitable[int]],
    *,
    batch: int,
) -> int:
    """Run `step` (which handles at most `batch` rows and returns how many it handled), one
    transaction per round, until a round handles fewer than `batch`; returns the total."""
    total = 0
    while True:
        async with unit_of_work(sessions) as session:
            handled = await step(session)
        total += handled
        if handled < batch:
            return total
