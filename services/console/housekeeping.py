"""The console's housekeeping: the erased leads' records only as long as they are needed.

A companion of the service (`shared.companions`), every `LEADFLOW_CONSOLE_HOUSEKEEPING_INTERVAL_S`
(3600): the records of erased leads (`console.erased_leads`, `shared.privacy.ErasedLeads`:
SHA-256 of lead ids) older than `LEADFLOW_CONSOLE_ERASED_LEADS_RETENTION_DAYS` (45) are
forgotten, by the index on `erased_at` (`ErasedLeads.forget_older_than`: one statement; an
erased lead is one row, and erasures are rare). 45 days outlast every topic's retention (30
days), so a replay of a topic from its earliest offset still finds an erased lead erased.

What the console keeps of leads needs no retention of its own: a lead's record (email, name,
company, title: what RevOps search and read on the lead pages) is kept while it is a lead, as
score keeps it, and goes with an erasure (`repository.erase_leads`); the rows kept for counts
after an erasure name nobody. Docs: docs/privacy.md, "Retention".

Several replicas: each runs housekeeping; a round first takes `HOUSEKEEPING_LOCK`
(`shared.advisory_locks`), a transaction-scoped advisory lock, without waiting, and a replica
that finds it taken skips the round (another replica is at it). Two at once would only repeat
an idempotent delete, waiting for each other's row locks.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console.config import ConsoleSettings
from services.console.metrics import HOUSEKEEPING_ROWS
from services.console.repository import ERASED_LEADS
from shared import advisory_locks
from shared.db import fetchval, unit_of_work

log = logging.getLogger(__name__)

HOUSEKEEPING_LOCK = advisory_locks.CONSOLE_HOUSEKEEPING
_TAKE_TURN = "SELECT pg_try_advisory_xact_lock($1, $2)"


async def housekeeping(
    *, sessions: async_sessionmaker[AsyncSession], settings: ConsoleSettings
) -> int | None:
    """One round (the companion's, `Companion.every`): the erased leads' records forgotten
    past their retention; returns how many (None: another replica had the turn)."""
    async with unit_of_work(sessions) as session:
        if not await fetchval(session, _TAKE_TURN, *HOUSEKEEPING_LOCK):
            return None
        forgotten = await ERASED_LEADS.forget_older_than(
            session, days=settings.erased_leads_retention_days
        )
    HOUSEKEEPING_ROWS.labels(store="erased_leads").inc(forgotten)
    if forgotten:
        log.info(
            "housekeeping: forgot %d erased leads' records older than %g days",
            forgotten,
            settings.erased_leads_retention_days,
        )
    return forgotten
