"""Every PostgreSQL advisory lock leadflow takes, in one place, and the one way to lock leads.

Advisory locks here are two-int keys `(space, key)`: each use has a space of its own, so two
uses never collide (the router's team locks are the one-bigint kind, a key space apart from
all of these). A new use takes a new space from this table.

| space | used by | held |
|---|---|---|
| `ENRICH_DO_NOT_TRACK_GATE` | enrich: shared by every batch of events, exclusive by an erasure | a transaction |
| `SCORE_LEADS` | score: a lead's messages, commands and erasure | a transaction |
| `ROUTER_LEADS` | router: a lead's stage changes, feedback, SLA checks and erasure (taken in its SQL functions, migration 0006) | a transaction |
| `CONSOLE_LEADS` | console: a lead's record, and its erasure | a transaction |
| `SYNC_LEADS` | sync: a lead's deliveries queued, held for order, or erased | a transaction |
| `*_HOUSEKEEPING` | one replica per round of a service's retention | a transaction |
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import execute

ENRICH_DO_NOT_TRACK_GATE = (0x0E21, 0)
SCORE_LEADS = 0x5C0E
SCORE_HOUSEKEEPING = (0x5C4E, 0)
ROUTER_LEADS = 0x7007
ROUTER_HOUSEKEEPING = (0x704E, 0)
CONSOLE_LEADS = 0xC050
CONSOLE_HOUSEKEEPING = (0xC04E, 0)
SYNC_LEADS = 0x5F1C


async def lock_leads(session: AsyncSession, lead_ids: Iterable[str], *, space: int) -> None:
    """Hold the leads' locks in `space` until the transaction ends, whether or not a row exists
    for them yet (a row lock cannot cover a lead that does not exist: two instances could then
    both decide about a new lead at once). One statement, in lock-key order, so two batches
    locking overlapping sets wait for each other instead of deadlocking; a lock the transaction
    already holds is a no-op. None given: nothing sent."""
    ids = sorted(set(lead_ids))
    if not ids:
        return
    await execute(
        session,
        "SELECT pg_advisory_xact_lock($1, lock_key) FROM "
        "(SELECT DISTINCT hashtext(lead_id) AS lock_key FROM unnest($2::text[]) AS lead_id "
        " ORDER BY lock_key OFFSET 0) AS lock_keys",
        space,
        ids,
    )
