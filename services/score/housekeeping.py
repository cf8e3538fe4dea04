"""score's housekeeping: what it keeps about people, only as long as it is needed.

A companion of the service (`shared.companions`), every `LEADFLOW_SCORE_HOUSEKEEPING_INTERVAL_S`
(3600):

- **The scored history** (`score.history`, a row per scored message with its stored facts: what
  rescores, simulations, unmerges and training replay) is kept
  `LEADFLOW_SCORE_HISTORY_RETENTION_DAYS` (400) by event time (`at`). Older rows are deleted
  `HISTORY_BATCH` at a time, each batch in a transaction of its own, read through the BRIN index
  on `at` (`history_at_brin`, migration 0011): never a scan of the whole table. A batch locks
  only rows past retention, which the consumer seldom writes (a merge moving a lead's old
  messages waits for one batch at most; a deadlock between them is retried by the consumer
  runner, and by the next round here).
- **The erased leads' records** (`score.erased_leads`, `shared.privacy.ErasedLeads`) are kept
  `LEADFLOW_SCORE_ERASED_LEADS_RETENTION_DAYS` (45), longer than any topic keeps a message, so
  that a replay of a topic from its earliest offset still finds an erased lead erased.

What goes with a history row, and what stays:

- **The ledger stays.** A lead's ledger lines are the explanation of its score (`explain`):
  rule ids, points, the rules' own reasons and cap notes, times, and lead and message ids; no
  fact of the person. A line of a message whose history row is gone keeps counting as it did (a
  behaviour award 400 days old has decayed to nothing in a group that decays; a fit line holds
  while the lead's picture does; a signal that does not fade, such as an unsubscribe, still
  counts), and it is what tells a message scored before from a new one once its history row is
  gone (`repository.load_states_and_scored`): a message that arrives again (a backfill posted
  twice) is not counted twice.
- **A rescore replays only the history that is left**, and replaces the ledger with it: the
  lines of messages past retention go then, so a signal that does not fade counts after a
  rescore only if its message is within retention. A lead none of whose own messages is left
  keeps its fit from the picture score keeps of it (`score.leads`,
  `rescoring.with_kept_picture`), and a rescore never makes a lead unidentified or unengaged
  because the messages that showed it are gone (`handler`). A simulation compares what a
  rescore would write. An unmerge takes each side's stage and first touch from what is left of
  its own messages; a model learns from the history that is left (a lead's example starts at
  its oldest message kept).

BRIN upkeep: a range's summary only ever widens, so housekeeping desummarizes each range it
deleted rows from (in the same statement) and summarizes them again at the start of its next
round (`brin_summarize_new_values`), when those rows are dead to every transaction; otherwise
every range would claim its oldest, long deleted, row after one retention period, and every
round would read the whole table (see migration 0011). Within a round the ranges already
deleted from are read again by each next batch (they are unsummarized), so a round stops after
`BATCHES_PER_ROUND` batches and a backlog (a first round over years of history) continues
`BACKLOG_PAUSE_S` later. Both functions take the table's SHARE UPDATE EXCLUSIVE lock (as
VACUUM does, never in the way of inserts, updates or deletes): a batch asks for it first,
without waiting (`NOWAIT`); while autovacuum holds it, the round stops and comes back
`BACKLOG_PAUSE_S` later, instead of waiting and making PostgreSQL cancel the vacuum.

Several replicas: each runs housekeeping, and every transaction of a round first takes
`HOUSEKEEPING_LOCK`, a transaction-scoped advisory lock, without waiting; a replica that finds
it taken ends its round there (another replica is at it). Two replicas would only repeat
idempotent deletes, but they would read the same candidate rows and wait for each other's row
locks, and desummarize the same ranges, for nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.config import ScoreSettings
from services.score.repository import SCHEMA
from shared import advisory_locks
from shared.db import execute, fetchrow, fetchval, unit_of_work
from shared.privacy import ErasedLeads

log = logging.getLogger(__name__)

HISTORY_BATCH = 5000
"""History rows deleted per statement (and transaction)."""
BATCHES_PER_ROUND = 20
"""Batches a round deletes at most; with more past retention, the next round comes sooner."""
BACKLOG_PAUSE_S = 60.0
"""The wait before the next round when this one left work (a backlog, or the history being
vacuumed): long enough for the rows it deleted to be dead to every transaction."""
HOUSEKEEPING_LOCK = advisory_locks.SCORE_HOUSEKEEPING

FORGOTTEN = Counter(
    "leadflow_score_housekeeping_forgotten_total",
    "Rows housekeeping deleted past their retention, by store (history, erased_leads)",
    ["store"],
)

ERASED_LEADS = ErasedLeads(SCHEMA)

_TAKE_TURN = "SELECT pg_try_advisory_xact_lock($1, $2)"
# The planner would read the oldest rows by a sequential scan where it believes many are past
# retention (the LIMIT stops it early only while they are all at the table's start); the BRIN
# index reads only the ranges that may hold them, whatever the statistics say.
PLAN_BY_INDEX = "SET LOCAL enable_seqscan = off"
_LOCK_HISTORY = "LOCK TABLE score.history IN SHARE UPDATE EXCLUSIVE MODE NOWAIT"
_SUMMARIZE = "SELECT brin_summarize_new_values('score.history_at_brin'::regclass)"
# One batch: the ids of up to $2 rows past retention (by the BRIN index), deleted by tuple id
# (rechecked: a row updated meanwhile, moved by a merge, is left to the next batch), and every
# range a deleted row was in desummarized (`brin_desummarize_range` takes any block of it).
FORGET_HISTORY = """
    WITH gone AS (
        DELETE FROM score.history
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM score.history
                                  WHERE at < now() - make_interval(secs => $1) LIMIT $2))
           AND at < now() - make_interval(secs => $1)
        RETURNING (ctid::text::point)[0]::bigint AS block
    )
    SELECT (SELECT count(*) FROM gone) AS deleted,
           (SELECT count(*) FROM (SELECT DISTINCT block FROM gone) AS touched
             CROSS JOIN LATERAL brin_desummarize_range('score.history_at_brin'::regclass,
                                                       touched.block)) AS blocks
"""


@dataclass(frozen=True)
class Round:
    """What one round did. `history`, `erased_leads`: rows deleted; `summarized`: BRIN ranges
    summarized again; `more`: it stopped with work left (a backlog, another replica's turn
    taken over, the history being vacuumed)."""

    history: int = 0
    erased_leads: int = 0
    summarized: int = 0
    more: bool = False
    skipped: bool = False  # another replica had the turn


async def housekeeping(
    *, sessions: async_sessionmaker[AsyncSession], settings: ScoreSettings
) -> float:
    """One round (the companion's); returns the seconds until the next one."""
    done = await housekeeping_round(
        sessions,
        history_retention_days=settings.history_retention_days,
        erased_leads_retention_days=settings.erased_leads_retention_days,
    )
    if done.history or done.erased_leads:
        log.info(
            "housekeeping: forgot %d history rows older than %g days and %d erased leads' "
            "records older than %g days%s",
            done.history,
            settings.history_retention_days,
            done.erased_leads,
            settings.erased_leads_retention_days,
            "; more to do" if done.more else "",
        )
    if done.more:
        return min(BACKLOG_PAUSE_S, settings.housekeeping_interval_s)
    return settings.housekeeping_interval_s


async def housekeeping_round(
    sessions: async_sessionmaker[AsyncSession],
    *,
    history_retention_days: float,
    erased_leads_retention_days: float,
    batch: int | None = None,
    batches: int | None = None,
) -> Round:
    """Forget the erased leads' records past retention, then the history rows past retention,
    `batch` rows per transaction (`HISTORY_BATCH`) and at most `batches` transactions
    (`BATCHES_PER_ROUND`); see the module doc."""
    batch = batch or HISTORY_BATCH
    batches = batches or BATCHES_PER_ROUND
    async with unit_of_work(sessions) as session:
        if not await _take_turn(session):
            return Round(skipped=True)
        erased = await ERASED_LEADS.forget_older_than(session, days=erased_leads_retention_days)
    FORGOTTEN.labels("erased_leads").inc(erased)
    history = summarized = 0
    for number in range(batches):
        try:
            async with unit_of_work(sessions) as session:
                if not await _take_turn(session):
                    return Round(history, erased, summarized, more=True)
                await execute(session, PLAN_BY_INDEX)
                await execute(session, _LOCK_HISTORY)
                if number == 0:
                    summarized = int(await fetchval(session, _SUMMARIZE))
                row = await fetchrow(session, FORGET_HISTORY, history_retention_days * 86400, batch)
        except asyncpg.LockNotAvailableError:
            log.info("housekeeping: the history is being vacuumed; trying again shortly")
            return Round(history, erased, summarized, more=True)
        assert row is not None
        deleted = int(row["deleted"])
        history += deleted
        FORGOTTEN.labels("history").inc(deleted)
        if deleted < batch:
            return Round(history, erased, summarized)
    return Round(history, erased, summarized, more=True)


async def _take_turn(session: AsyncSession) -> bool:
    """This transaction holds the housekeeping lock (taken without waiting)."""
    return bool(await fetchval(session, _TAKE_TURN, *HOUSEKEEPING_LOCK))
