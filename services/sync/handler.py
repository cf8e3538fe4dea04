"""The consumer handler: `routing.sdr`, `routing.nurture`, `routing.withdrawals`,
`leads.lifecycle` and `privacy.erasures` in; rows in the delivery queue out (and
`privacy.reports`, sync's part of each erasure). It never waits on a destination: the lanes
(`delivery`) send what it queued, after its commit.

Per batch, in the runner's transaction:
0. The batch's leads, and the leads of its erasure notices, are locked (`repository.lock_leads`,
   one statement; why: `repository` module doc), then asked which were erased before (one
   query). Each erasure notice is done (`_erase`: the leads' queued deliveries, dead letters and
   held events deleted, the leads remembered as erased, the notice itself queued for the
   destinations that take erasures, a report output); the batch's messages about erased leads
   are dropped and counted (`leadflow_sync_erased_lead_messages_dropped_total`).
1. The leads with routing events that carry a `sequence` have their routing order read (one
   query), and each lead's events are arranged (`ordering.arrange`: released in sequence
   order, or held at most `reorder_wait_s` for an earlier one).
2. Every released event is queued once per destination that wants it, in its lead's lane
   (`events.fan_out`), with the leads' new routing order: one statement (`repository.enqueue`).
A batch of stage changes alone takes three statements (lock, erased check, queue).

Exactly once: the runner applies a batch at most once, and the queue rows commit with its
offsets. A message produced twice upstream is queued twice and delivered with the same
idempotency key (receivers dedupe by it). An erasure notice delivered again erases nothing more,
queues the notice again and reports again (zero rows).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.sync import repository
from services.sync.destinations import Destination
from services.sync.events import Event, event_of, fan_out
from services.sync.metrics import ERASED_LEAD_MESSAGES_DROPPED, GAPS_GIVEN_UP, HELD
from services.sync.ordering import LeadOrder, arrange, skipped
from shared.consumer import Message, Output
from shared.contracts import ErasureNotice
from shared.privacy import erasure_report

log = logging.getLogger(__name__)

SERVICE = "sync"


class SyncHandler:
    """Queues the batch's events for `destinations` (see the module doc)."""

    def __init__(self, destinations: Sequence[Destination], *, reorder_wait: timedelta) -> None:
        self._destinations = tuple(destinations)
        self._wait = reorder_wait

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        now = datetime.now(UTC)
        notices = [m.value for m in messages if isinstance(m.value, ErasureNotice)]
        events = [event_of(m.value) for m in messages if not isinstance(m.value, ErasureNotice)]
        erasing = {lead_id for notice in notices for lead_id in notice.lead_ids}
        # Step 0 (module doc): the locks before anything is read.
        await repository.lock_leads(session, [*(e.lead_id for e in events), *erasing])
        erased = await repository.ERASED_LEADS.among(session, {e.lead_id for e in events})
        reports = []
        for notice in notices:
            reports.append(await self._erase(session, notice, now))
            erased.update(notice.lead_ids)
        kept = []
        for event in events:
            if event.lead_id in erased:
                ERASED_LEAD_MESSAGES_DROPPED.labels(type=event.type).inc()
            else:
                kept.append(event)
        released, orders = await self._arrange(session, kept, now)
        await repository.enqueue(session, fan_out(released, self._destinations), orders)
        return reports

    async def _arrange(
        self, session: AsyncSession, events: list[Event], now: datetime
    ) -> tuple[list[Event], list[LeadOrder]]:
        """Step 1: the events to queue, grouped by lead (each lead's in order), and the routing
        orders that changed."""
        by_lead: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_lead[event.lead_id].append(event)
        sequenced = sorted(
            lead for lead, evs in by_lead.items() if any(e.sequence is not None for e in evs)
        )
        stored = await repository.lead_orders(session, sequenced) if sequenced else {}
        released: list[Event] = []
        orders: list[LeadOrder] = []
        for lead_id in sorted(by_lead):
            arriving = by_lead[lead_id]
            if lead_id not in sequenced:
                released += arriving
                continue
            before = stored.get(lead_id, LeadOrder(lead_id))
            out, after = arrange(before, arriving, now=now, wait=self._wait)
            released += out
            orders.append(after)
            was_held = {held.event.sequence for held in before.held}
            HELD.inc(sum(1 for held in after.held if held.event.sequence not in was_held))
            GAPS_GIVEN_UP.inc(skipped(before.last_sequence, out))
        return released, orders

    async def _erase(self, session: AsyncSession, notice: ErasureNotice, now: datetime) -> Output:
        """One erasure (step 0): the leads' rows deleted (their payloads name the person), the
        leads remembered as erased, the notice queued for the destinations that take erasures,
        and the report to send once committed."""
        erased = await repository.erase_leads(session, notice.lead_ids)
        await repository.ERASED_LEADS.remember(session, notice.lead_ids)
        await repository.enqueue(session, fan_out([event_of(notice)], self._destinations), [])
        log.info(
            "erasure %s: %d queued deliveries, %d dead letters and %d held leads erased",
            notice.request_id,
            erased["deliveries"],
            erased["dead_letters"],
            erased["lead_order"],
        )
        return erasure_report(notice, service=SERVICE, erased=erased, at=now)


async def release_expired_holds(
    session: AsyncSession,
    destinations: Sequence[Destination],
    *,
    now: datetime,
    wait: timedelta,
    limit: int = 500,
) -> int:
    """The holds companion's round: the leads whose held routing events waited `wait` are
    locked, re-read, and their events released (`ordering.arrange` with nothing arriving), in
    one transaction (`session`). Returns the events queued."""
    leads = await repository.leads_with_expired_holds(session, now, limit)
    if not leads:
        return 0
    await repository.lock_leads(session, leads)
    stored = await repository.lead_orders(session, leads)  # read again, under the locks
    released: list[Event] = []
    orders: list[LeadOrder] = []
    for lead_id in sorted(stored):
        out, after = arrange(stored[lead_id], [], now=now, wait=wait)
        if out:
            GAPS_GIVEN_UP.inc(skipped(stored[lead_id].last_sequence, out))
            released += out
            orders.append(after)
    await repository.enqueue(session, fan_out(released, destinations), orders)
    return len(released)
