"""router's housekeeping: a decision's personal parts only as long as the decision needs them.

A companion of the service (`shared.companions`), every `LEADFLOW_ROUTER_HOUSEKEEPING_INTERVAL_S`
(3600), in bounded statements (`shared.housekeeping.in_rounds`: at most `SCRUB_BATCH` rows each,
in a transaction of its own, until one handles fewer):

- **Decisions** decided more than `LEADFLOW_ROUTER_DECISION_PAYLOAD_RETENTION_DAYS` (90) ago are
  scrubbed: `payload` keeps only `KEPT_PAYLOAD_FIELDS` (route, stage, owner, queue, track,
  strategy, territory, routing version, score, times, ids) and has `EMPTIED_PAYLOAD_FIELDS`
  emptied (the lead's email, name and company: null; `reasons`: empty, since they quote the
  account's name and score's reasons, which may quote the person or a CRM); `change` (the
  stage change, with the lead's whole profile) and `email` become NULL; `scrubbed_at` says
  when. The row stays: counts, each rep's decisions and loads, SLA breaches and the lead's
  routing history stay true, without saying who the lead was. Open decisions too: a decision
  still open after 90 days is stale (an SLA is minutes to hours; a nurture decision stays open
  until the lead's next stage change, which may never come, and those are most of the old
  rows), and what it still does works on the scrubbed row: CRM feedback naming the lead id and
  the lead's next stage change close it, an SLA check reads it (a reassignment made from it
  carries no email, name or company: the CRM has the lead by its id). CRM feedback naming the
  lead by email alone no longer finds it, as the history lookup by email does not.
- **Suppressions** (and changes recorded as history) recorded before the same retention lose
  their email, and their reason is cut to its kind ("disqualified", "opted out", "on the
  suppression list", "competitor domain", "blocked domain", "existing customer"): the details
  after it quote the CRM's reason text, the suppression list's entry (an email) or the
  account's name. A history reason (times and the backfill horizon only) is kept whole. The
  rows stay rather than go: the lead's routing history keeps saying why a change was not
  routed, and counts of suppressions stay true; nothing personal is left in them.
- **Simulations** started before the same retention keep their examples without the leads'
  emails (lead ids, decision times and outcomes stay): an example names a lead whose decision
  is by then scrubbed as well.
- **The erased leads' records** (`router.erased_leads`, `shared.privacy.ErasedLeads`) are kept
  `LEADFLOW_ROUTER_ERASED_LEADS_RETENTION_DAYS` (45), longer than any topic keeps a message,
  so a replay of a topic from its earliest offset still finds an erased lead erased.

Each scrub reads its table by a partial index of the rows not scrubbed yet, by time (migration
0007), oldest first, so no statement scans a table, and a scrubbed row is never read again.
The rows of a batch are locked `FOR UPDATE SKIP LOCKED`: housekeeping never waits for the
consumer (a row the consumer holds, a decision being closed or checked, is left to the next
statement or round) and so never deadlocks with it; the consumer waits for one statement at
most, and only on a row past retention, which it seldom touches.

Several replicas: each runs housekeeping, and every transaction of a round first takes
`HOUSEKEEPING_LOCK` (`shared.advisory_locks`), a transaction-scoped advisory lock, without
waiting; a replica that finds it taken ends its round there (another replica is at it). Two
replicas at once would do no harm (SKIP LOCKED: they would scrub different rows, and a row
scrubbed is not read again), but they would compete for the same index pages and I/O for
nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.config import RouterSettings
from services.router.metrics import HOUSEKEEPING_ROWS
from services.router.repository import ERASED_LEADS
from shared import advisory_locks
from shared.db import execute, fetchval, unit_of_work
from shared.housekeeping import in_rounds

log = logging.getLogger(__name__)

SCRUB_BATCH = 2000
"""Rows scrubbed per statement (and transaction)."""
HOUSEKEEPING_LOCK = advisory_locks.ROUTER_HOUSEKEEPING

KEPT_PAYLOAD_FIELDS = (
    "schema_version",
    "decision_id",
    "transition_id",
    "lead_id",
    "route",
    "stage",
    "score",
    "owner",  # the rep (staff), not the lead
    "queue",
    "track",
    "strategy",
    "territory",
    "routing_version",
    "account_id",
    "supersedes",
    "received_at",
    "decided_at",
    "stored_at",
    "sla_due_at",
    "speed_to_lead_ms",
    "sequence",
    "released_at",
)
"""The fields of a decision's payload (`RoutingDecision`) a scrubbed decision keeps: nothing of
the lead but ids, numbers and times, and the routing's own names."""
EMPTIED_PAYLOAD_FIELDS: dict[str, Any] = {"email": None, "name": None, "company": None,
                                          "reasons": []}  # fmt: skip
"""The fields a scrubbed payload has emptied, kept as keys: the payload still reads as a
`RoutingDecision` (an open decision's SLA check parses it)."""

_TAKE_TURN = "SELECT pg_try_advisory_xact_lock($1, $2)"

SCRUB_DECISIONS = """
    UPDATE router.decisions AS decision
       SET payload = coalesce((SELECT jsonb_object_agg(field.key, field.value)
                                 FROM jsonb_each(decision.payload) AS field
                                WHERE field.key = ANY($3::text[])), '{}'::jsonb) || $4::jsonb,
           change = NULL,
           email = NULL,
           scrubbed_at = now()
     WHERE decision.decision_id = ANY(ARRAY(
               SELECT due.decision_id
                 FROM router.decisions AS due
                WHERE due.scrubbed_at IS NULL
                  AND due.decided_at < now() - make_interval(secs => $1)
                ORDER BY due.decided_at
                LIMIT $2
                  FOR UPDATE SKIP LOCKED))
"""
"""One batch: up to $2 decisions decided more than $1 seconds ago and not scrubbed yet (by
`decisions_unscrubbed_idx`), scrubbed ($3: the payload fields kept, $4: the emptied ones)."""

SCRUB_SUPPRESSIONS = """
    UPDATE router.suppressions AS suppression
       SET email = NULL,
           reason = CASE
               WHEN suppression.reason LIKE 'history:%' THEN suppression.reason
               WHEN suppression.reason LIKE 'competitor domain %' THEN 'competitor domain'
               WHEN suppression.reason LIKE 'blocked domain %' THEN 'blocked domain'
               ELSE split_part(suppression.reason, ':', 1)
           END,
           scrubbed_at = now()
     WHERE suppression.transition_id = ANY(ARRAY(
               SELECT due.transition_id
                 FROM router.suppressions AS due
                WHERE due.scrubbed_at IS NULL
                  AND due.recorded_at < now() - make_interval(secs => $1)
                ORDER BY due.recorded_at
                LIMIT $2
                  FOR UPDATE SKIP LOCKED))
"""
"""One batch: up to $2 suppressions recorded more than $1 seconds ago and not scrubbed yet (by
`suppressions_unscrubbed_idx`): email gone, reason cut to its kind (`suppression.
suppression_reason` writes each as its kind, then ": " and details, or a domain after a space)."""

SCRUB_SIMULATIONS = """
    UPDATE router.simulations AS simulation
       SET result = jsonb_set(simulation.result, '{changes}', coalesce(
           (SELECT jsonb_agg(CASE WHEN listed.example ? 'email'
                                  THEN listed.example || '{"email": null}'::jsonb
                                  ELSE listed.example END
                             ORDER BY listed.position)
              FROM jsonb_array_elements(simulation.result -> 'changes')
                   WITH ORDINALITY AS listed(example, position)),
           '[]'::jsonb))
     WHERE simulation.id = ANY(ARRAY(
               SELECT named.id
                 FROM router.simulations AS named
                WHERE named.result @? '$.changes[*].email ? (@ != null)'
                  AND named.started_at < now() - make_interval(secs => $1)
                  AND jsonb_typeof(named.result -> 'changes') = 'array'
                ORDER BY named.started_at
                LIMIT $2
                  FOR UPDATE SKIP LOCKED))
"""
"""One batch: up to $2 simulations started more than $1 seconds ago whose examples still name
leads by email (by `simulations_named_examples_idx`, whose predicate is the `@?` here): each
example keeps its lead id, time and outcomes, its email becomes null."""


@dataclass(frozen=True)
class Round:
    """What one round did: rows scrubbed per table, erased leads' records forgotten; `skipped`:
    another replica had the turn when the round began."""

    decisions: int = 0
    suppressions: int = 0
    simulations: int = 0
    erased_leads: int = 0
    skipped: bool = False

    def any(self) -> bool:
        return bool(self.decisions or self.suppressions or self.simulations or self.erased_leads)


async def housekeeping(
    *, sessions: async_sessionmaker[AsyncSession], settings: RouterSettings
) -> Round:
    """One round (the companion's, `Companion.every`): see the module doc."""
    done = await housekeeping_round(
        sessions,
        payload_retention_days=settings.decision_payload_retention_days,
        erased_leads_retention_days=settings.erased_leads_retention_days,
    )
    if done.any():
        log.info(
            "housekeeping: scrubbed %d decisions, %d suppressions and %d simulations older than"
            " %g days; forgot %d erased leads' records older than %g days",
            done.decisions,
            done.suppressions,
            done.simulations,
            settings.decision_payload_retention_days,
            done.erased_leads,
            settings.erased_leads_retention_days,
        )
    return done


async def housekeeping_round(
    sessions: async_sessionmaker[AsyncSession],
    *,
    payload_retention_days: float,
    erased_leads_retention_days: float,
    batch: int = SCRUB_BATCH,
) -> Round:
    """Forget the erased leads' records past their retention, then scrub the decisions,
    suppressions and simulations past theirs, `batch` rows per statement and transaction, each
    transaction under the housekeeping lock (module doc)."""
    async with unit_of_work(sessions) as session:
        if not await _take_turn(session):
            return Round(skipped=True)
        erased = await ERASED_LEADS.forget_older_than(session, days=erased_leads_retention_days)
    HOUSEKEEPING_ROWS.labels(store="erased_leads").inc(erased)
    older_than_s = payload_retention_days * 86400
    kept, emptied = list(KEPT_PAYLOAD_FIELDS), orjson.dumps(EMPTIED_PAYLOAD_FIELDS).decode()
    scrubbed: dict[str, int] = {}
    for store, statement, args in (
        ("decisions", SCRUB_DECISIONS, (older_than_s, batch, kept, emptied)),
        ("suppressions", SCRUB_SUPPRESSIONS, (older_than_s, batch)),
        ("simulations", SCRUB_SIMULATIONS, (older_than_s, batch)),
    ):
        step = partial(_scrub, store=store, statement=statement, args=args)
        scrubbed[store] = await in_rounds(sessions, step, batch=batch)
    return Round(
        decisions=scrubbed["decisions"],
        suppressions=scrubbed["suppressions"],
        simulations=scrubbed["simulations"],
        erased_leads=erased,
    )


async def _scrub(
    session: AsyncSession, *, store: str, statement: str, args: tuple[Any, ...]
) -> int:
    """One batch of `statement` under the housekeeping lock (none if another replica has it:
    0, which ends `in_rounds`); returns the rows scrubbed."""
    if not await _take_turn(session):
        return 0
    scrubbed = await execute(session, statement, *args)
    HOUSEKEEPING_ROWS.labels(store=store).inc(scrubbed)
    return scrubbed


async def _take_turn(session: AsyncSession) -> bool:
    """This transaction holds the housekeeping lock (taken without waiting)."""
    return bool(await fetchval(session, _TAKE_TURN, *HOUSEKEEPING_LOCK))
