"""sync's tables (migrations/versions/0001_queue.py): every statement sync sends.

Locks: the consumer's batches, the holds companion and an erasure take their leads' advisory
locks (`lock_leads`, space `SYNC_LEADS`) before reading or writing anything about them, so a
lead's rows are queued in the order of the transactions that commit them (a lane never sees a
lead's later row committed before its earlier one), and a batch handled beside an erasure of
the same lead either commits first (and its rows are erased) or finds the lead erased. The
lanes take no lock: a destination's lanes belong to the one replica holding its lease, and the
statements that end an attempt are written so that rows deleted meanwhile (an erasure) stay
deleted (`delivered`, `failed` touch only rows still there; dead letters are moved with
DELETE ... RETURNING).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.sync.events import Delivery, Event, lane_of
from services.sync.ordering import Held, LeadOrder
from shared.advisory_locks import SYNC_LEADS
from shared.advisory_locks import lock_leads as lock_leads_in
from shared.db import execute, fetch, fetchrow, fetchval, json_document
from shared.privacy import ErasedLeads

SCHEMA = "sync"
QUEUED_CHANNEL = "leadflow_sync_queued"
"""What `enqueue` notifies (its literal SQL names it too)."""
ERASED_LEADS = ErasedLeads(SCHEMA)
MAX_LANES = 64  # DestinationConfig.concurrency's bound: the lanes the health figures look at


async def lock_leads(session: AsyncSession, lead_ids: Iterable[str]) -> None:
    await lock_leads_in(session, lead_ids, space=SYNC_LEADS)


# -- the consumer's side: queueing ---------------------------------------------------------------


def event_document(event: Event) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "event_id": event.event_id,
        "lead_id": event.lead_id,
        "sequence": event.sequence,
        "route": event.route,
        "stage": event.stage,
        "timestamp": event.timestamp,
        "received_at": event.received_at,
        "data": event.data,
    }


def event_from_document(document: dict[str, Any]) -> Event:
    received = document["received_at"]
    return Event(
        kind=document["kind"],
        event_id=document["event_id"],
        lead_id=document["lead_id"],
        sequence=document["sequence"],
        route=document["route"],
        stage=document["stage"],
        timestamp=datetime.fromisoformat(document["timestamp"]),
        received_at=datetime.fromisoformat(received) if received else None,
        data=document["data"],
    )


async def lead_orders(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadOrder]:
    """The routing order of these leads (locked by the caller); a lead without a row has none."""
    rows = await fetch(
        session,
        "SELECT lead_id, last_sequence, held FROM sync.lead_order WHERE lead_id = ANY($1::text[])",
        sorted(set(lead_ids)),
    )
    return {
        row["lead_id"]: LeadOrder(
            row["lead_id"],
            last_sequence=row["last_sequence"],
            held=tuple(
                Held(event_from_document(h["event"]), datetime.fromisoformat(h["until"]))
                for h in row["held"]
            ),
        )
        for row in rows
    }


def queued_lanes(deliveries: Sequence[Delivery]) -> dict[str, int]:
    """The notification's payload: per destination, a bit per lane rows were queued for. Small
    whatever the batch (PostgreSQL refuses a payload of 8,000 bytes or more)."""
    lanes: dict[str, int] = {}
    for delivery in deliveries:
        lanes[delivery.destination] = lanes.get(delivery.destination, 0) | (1 << delivery.lane)
    return lanes


async def enqueue(
    session: AsyncSession, deliveries: Sequence[Delivery], orders: Sequence[LeadOrder]
) -> int:
    """Queue `deliveries` in their order (each row's `delivery_id` follows the one before: a
    lane's FIFO order) and store the leads' routing `orders`, in one statement. Returns the rows
    queued. An event without `received_at` counts its latency from now (when it was queued).

    The same statement notifies `QUEUED_CHANNEL` with the lanes it queued for (`queued_lanes`): PostgreSQL delivers it when the transaction commits, to whichever replica sends
    to those destinations (`delivery.Deliveries` listens), so a lane wakes as soon as its rows
    can be read instead of at its next idle poll."""
    if not deliveries and not orders:
        return 0
    rows = [
        {
            "position": position,
            "destination": delivery.destination,
            "lane": delivery.lane,
            "lead_id": delivery.event.lead_id,
            "event_id": delivery.event.event_id,
            "event_kind": delivery.event.kind,
            "sequence": delivery.event.sequence,
            "event_at": delivery.event.timestamp,
            "data": delivery.event.data,
            "received_at": delivery.event.received_at,
        }
        for position, delivery in enumerate(deliveries)
    ]
    order_rows = [
        {
            "lead_id": order.lead_id,
            "last_sequence": order.last_sequence,
            "held": [
                {"event": event_document(held.event), "until": held.until} for held in order.held
            ],
            "held_until": order.held_until,
        }
        for order in orders
    ]
    # The INSERT numbers its rows (delivery_id, a sequence) as the ORDER BY hands them over.
    queued: int = await fetchval(
        session,
        """
        WITH queued AS (
            INSERT INTO sync.deliveries (destination, lane, lead_id, event_id, event_kind,
                                         sequence, event_at, data, received_at)
            SELECT row.destination, row.lane, row.lead_id, row.event_id, row.event_kind,
                   row.sequence, row.event_at, row.data, coalesce(row.received_at, now())
            FROM jsonb_to_recordset($1::jsonb) AS row(
                position integer, destination text, lane integer, lead_id text, event_id text,
                event_kind text, sequence integer, event_at timestamptz, data jsonb,
                received_at timestamptz)
            ORDER BY row.position
            RETURNING 1
        ), ordered AS (
            INSERT INTO sync.lead_order (lead_id, last_sequence, held, held_until)
            SELECT lead.lead_id, lead.last_sequence, lead.held, lead.held_until
            FROM jsonb_to_recordset($2::jsonb) AS lead(
                lead_id text, last_sequence integer, held jsonb, held_until timestamptz)
            ON CONFLICT (lead_id) DO UPDATE SET
                last_sequence = excluded.last_sequence, held = excluded.held,
                held_until = excluded.held_until, updated_at = now()
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM queued) + 0 * (SELECT count(*) FROM ordered),
               (SELECT pg_notify('leadflow_sync_queued', $3) WHERE $3 <> '')
        """,
        json_document(rows),
        json_document(order_rows),
        json_document(queued_lanes(deliveries)) if deliveries else "",
    )
    return queued


async def leads_with_expired_holds(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await fetch(
        session,
        "SELECT lead_id FROM sync.lead_order WHERE held_until <= $1 ORDER BY held_until LIMIT $2",
        now,
        limit,
    )
    return [row["lead_id"] for row in rows]


async def erase_leads(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, int]:
    """Delete what sync keeps about the leads (locked by the caller): their queued deliveries,
    their dead letters and their held routing events (their payloads name the person). Earlier
    erasure notices stay queued: they name no one."""
    row = await fetchrow(
        session,
        """
        WITH deliveries AS (
            DELETE FROM sync.deliveries
            WHERE lead_id = ANY($1::text[]) AND event_kind <> 'erasures' RETURNING 1
        ), dead_letters AS (
            DELETE FROM sync.dead_letters
            WHERE lead_id = ANY($1::text[]) AND event_kind <> 'erasures' RETURNING 1
        ), lead_order AS (
            DELETE FROM sync.lead_order WHERE lead_id = ANY($1::text[]) RETURNING 1
        )
        SELECT (SELECT count(*) FROM deliveries) AS deliveries,
               (SELECT count(*) FROM dead_letters) AS dead_letters,
               (SELECT count(*) FROM lead_order) AS lead_order
        """,
        list(lead_ids),
    )
    assert row is not None
    return {"deliveries": row["deliveries"], "dead_letters": row["dead_letters"],
            "lead_order": row["lead_order"]}  # fmt: skip


# -- the lanes' side: sending --------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A queued delivery as a lane reads it."""

    delivery_id: int
    lead_id: str
    event_id: str
    event_kind: str
    sequence: int | None
    event_at: datetime
    data: Any
    received_at: datetime
    attempts: int
    next_attempt_at: datetime | None


async def lane_head(session: AsyncSession, destination: str, lane: int, limit: int) -> list[Queued]:
    """The first `limit` rows of a lane, oldest first (`deliveries_lane_idx`)."""
    rows = await fetch(
        session,
        """
        SELECT delivery_id, lead_id, event_id, event_kind, sequence, event_at, data,
               received_at, attempts, next_attempt_at
        FROM sync.deliveries WHERE destination = $1 AND lane = $2
        ORDER BY delivery_id LIMIT $3
        """,
        destination,
        lane,
        limit,
    )
    return [Queued(**dict(row)) for row in rows]


async def delivered(session: AsyncSession, destination: str, ids: Sequence[int]) -> int:
    """The rows a destination acknowledged: deleted, counted on the destination."""
    count: int = await fetchval(
        session,
        """
        WITH gone AS (
            DELETE FROM sync.deliveries WHERE delivery_id = ANY($2::bigint[]) RETURNING 1
        ), counted AS (
            UPDATE sync.destinations SET delivered_total = delivered_total + (SELECT count(*)
                                                                              FROM gone),
                                         last_delivered_at = now()
            WHERE name = $1 RETURNING 1
        )
        SELECT (SELECT count(*) FROM gone) + 0 * (SELECT count(*) FROM counted)
        """,
        destination,
        list(ids),
    )
    return count


async def failed(
    session: AsyncSession,
    destination: str,
    ids: Sequence[int],
    *,
    max_attempts: int,
    rejected: bool,
    status: int | None,
    error: str,
    dead_letter_error: str,
    next_attempt_at: datetime,
) -> int:
    """An attempt that failed: each row's attempts counted; rows at `max_attempts` (all of them
    when `rejected`) moved to the dead letters with `dead_letter_error`, the others wait for
    `next_attempt_at` with `error`; the destination's last error noted (`error`: it quotes no
    answer, `retries.Failure`). Returns the rows dead-lettered."""
    dead: int = await fetchval(
        session,
        """
        WITH moved AS (
            DELETE FROM sync.deliveries
            WHERE delivery_id = ANY($2::bigint[]) AND ($4 OR attempts + 1 >= $3)
            RETURNING *
        ), dead AS (
            INSERT INTO sync.dead_letters (destination, lead_id, event_id, event_kind, sequence,
                                           event_at, data, received_at, created_at, attempts,
                                           last_status, last_error)
            SELECT destination, lead_id, event_id, event_kind, sequence, event_at, data,
                   received_at, created_at, attempts + 1, $5, $8
            FROM moved ORDER BY delivery_id
            RETURNING 1
        ), retried AS (
            UPDATE sync.deliveries
            SET attempts = attempts + 1, next_attempt_at = $7, last_error = $6
            WHERE delivery_id = ANY($2::bigint[]) AND NOT ($4 OR attempts + 1 >= $3)
            RETURNING 1
        ), noted AS (
            UPDATE sync.destinations SET last_error = $6, last_error_at = now()
            WHERE name = $1 RETURNING 1
        )
        SELECT (SELECT count(*) FROM dead)
               + 0 * (SELECT count(*) FROM retried) + 0 * (SELECT count(*) FROM noted)
        """,
        destination,
        list(ids),
        max_attempts,
        rejected,
        status,
        error,
        next_attempt_at,
        dead_letter_error,
    )
    return dead


# -- leases --------------------------------------------------------------------------------------


async def take_leases(
    session: AsyncSession, names: Sequence[str], *, holder: str, lease_s: float
) -> set[str]:
    """Take or renew the leases of `names` that are free, expired or already `holder`'s (the
    database's clock decides, the same for every replica); the names now held."""
    rows = await fetch(
        session,
        """
        INSERT INTO sync.destinations AS held (name, leased_by, lease_until)
        SELECT name, $2, now() + make_interval(secs => $3) FROM unnest($1::text[]) AS name
        ON CONFLICT (name) DO UPDATE SET leased_by = excluded.leased_by,
                                         lease_until = excluded.lease_until
        WHERE held.leased_by = excluded.leased_by OR held.lease_until IS NULL
              OR held.lease_until < now()
        RETURNING name
        """,
        list(names),
        holder,
        lease_s,
    )
    return {row["name"] for row in rows}


async def release_leases(session: AsyncSession, holder: str) -> None:
    """At shutdown: another replica may take them at once."""
    await execute(
        session,
        "UPDATE sync.destinations SET leased_by = NULL, lease_until = NULL WHERE leased_by = $1",
        holder,
    )


async def relane(session: AsyncSession, destination: str, lanes: int) -> int:
    """Before a new lease holder sends: when the destination's rows were queued in another
    number of lanes (its `concurrency` changed), move each lead's rows to its lane now, keeping
    their order; record the number. Returns the rows moved."""
    recorded = await fetchval(
        session, "SELECT lanes FROM sync.destinations WHERE name = $1 FOR UPDATE", destination
    )
    moved = 0
    if recorded is not None and recorded != lanes:
        leads = await fetch(
            session,
            "SELECT DISTINCT lead_id FROM sync.deliveries WHERE destination = $1",
            destination,
        )
        mapping = [{"lead_id": r["lead_id"], "lane": lane_of(r["lead_id"], lanes)} for r in leads]
        moved = await execute(
            session,
            """
            UPDATE sync.deliveries AS queued SET lane = moved.lane
            FROM jsonb_to_recordset($2::jsonb) AS moved(lead_id text, lane integer)
            WHERE queued.destination = $1 AND queued.lead_id = moved.lead_id
                  AND queued.lane <> moved.lane
            """,
            destination,
            json_document(mapping),
        )
    if recorded != lanes:
        await execute(
            session, "UPDATE sync.destinations SET lanes = $2 WHERE name = $1", destination, lanes
        )
    return moved


# -- health and operations -----------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationHealth:
    name: str
    queued: int
    oldest_queued_at: datetime | None
    retrying: int
    dead_letters: int
    delivered_total: int
    last_delivered_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    leased_by: str | None
    lease_until: datetime | None


async def health(session: AsyncSession, names: Sequence[str]) -> list[DestinationHealth]:
    """Per destination (`names`, and any other the tables know): the queue, its oldest row (the
    lanes' heads, by index), the rows retrying, the dead letters and the counters."""
    rows = await fetch(
        session,
        """
        WITH known AS (
            SELECT unnest($1::text[]) AS name UNION SELECT name FROM sync.destinations
        )
        SELECT known.name,
               (SELECT count(*) FROM sync.deliveries AS queued
                WHERE queued.destination = known.name) AS queued,
               (SELECT min(head.created_at) FROM generate_series(0, $2 - 1) AS lanes(number),
                LATERAL (SELECT created_at FROM sync.deliveries AS queued
                         WHERE queued.destination = known.name AND queued.lane = lanes.number
                         ORDER BY delivery_id LIMIT 1) AS head) AS oldest_queued_at,
               (SELECT count(*) FROM sync.deliveries AS queued
                WHERE queued.destination = known.name AND queued.attempts > 0) AS retrying,
               (SELECT count(*) FROM sync.dead_letters AS dead
                WHERE dead.destination = known.name) AS dead_letters,
               coalesce(destination.delivered_total, 0) AS delivered_total,
               destination.last_delivered_at, destination.last_error,
               destination.last_error_at, destination.leased_by, destination.lease_until
        FROM known LEFT JOIN sync.destinations AS destination ON destination.name = known.name
        ORDER BY known.name
        """,
        list(names),
        MAX_LANES,
    )
    return [DestinationHealth(**dict(row)) for row in rows]


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_id: int
    lead_id: str


async def dead_letters(
    session: AsyncSession, destination: str, event_id: str | None
) -> list[DeadLetter]:
    rows = await fetch(
        session,
        """
        SELECT dead_letter_id, lead_id FROM sync.dead_letters
        WHERE destination = $1 AND ($2::text IS NULL OR event_id = $2)
        ORDER BY dead_letter_id
        """,
        destination,
        event_id,
    )
    return [DeadLetter(row["dead_letter_id"], row["lead_id"]) for row in rows]


async def requeue(session: AsyncSession, destination: str, letters: Sequence[DeadLetter],
                  *, lanes: int) -> int:  # fmt: skip
    """Move dead letters back to the end of their lanes (attempts from zero), in the order they
    died; a letter erased meanwhile is not brought back (DELETE ... RETURNING)."""
    mapping = [
        {"dead_letter_id": letter.dead_letter_id, "lane": lane_of(letter.lead_id, lanes)}
        for letter in letters
    ]
    count: int = await fetchval(
        session,
        """
        WITH chosen AS (
            SELECT * FROM jsonb_to_recordset($2::jsonb) AS chosen(dead_letter_id bigint,
                                                                  lane integer)
        ), moved AS (
            DELETE FROM sync.dead_letters AS dead USING chosen
            WHERE dead.destination = $1 AND dead.dead_letter_id = chosen.dead_letter_id
            RETURNING dead.*, chosen.lane
        ), queued AS (
            INSERT INTO sync.deliveries (destination, lane, lead_id, event_id, event_kind,
                                         sequence, event_at, data, received_at)
            SELECT destination, lane, lead_id, event_id, event_kind, sequence, event_at, data,
                   received_at
            FROM moved ORDER BY dead_letter_id
            RETURNING 1
        )
        SELECT count(*) FROM queued
        """,
        destination,
        json_document(mapping),
    )
    return count


async def forget_old_dead_letters(session: AsyncSession, *, days: float) -> int:
    """Delete the dead letters that died more than `days` ago (they hold the event as it was:
    the lead's email and name); how many. Read by `dead_letters_dead_at_idx`."""
    return await execute(
        session,
        "DELETE FROM sync.dead_letters WHERE dead_at < now() - make_interval(secs => $1)",
        days * 86400,
    )


async def forget_idle_lead_orders(session: AsyncSession, *, days: float) -> int:
    return await execute(
        session,
        """
        DELETE FROM sync.lead_order
        WHERE updated_at < now() - make_interval(secs => $1) AND held_until IS NULL
        """,
        days * 86400,
    )
