"""A lead's routing events in `sequence` order, whichever topic brought them first.

The router numbers every message it emits about a lead on `routing.sdr`, `routing.nurture` and
`routing.withdrawals` (1, 2, 3, ... with no gaps: shared/contracts/routing.py). Three topics are
three sets of partitions, consumed independently: a withdrawal (sequence 4) can arrive before
the decision it follows (sequence 3). Within a batch, a lead's events are simply sorted; across
batches sync keeps, per lead, the last sequence it released and the events it holds
(`LeadOrder`, one row of `sync.lead_order`):

- an event whose sequence is the next one (or older: a replay, or one that arrives after its
  gap was given up) is released at once, and with it the held events that now follow on;
- an event past a gap is held, at most `reorder_wait_s` after sync first saw it; when that
  passes (`arrange` at a later batch of the lead, or the holds companion), it is released with
  everything before it, the gap given up on (a receiver orders by `sequence` and ignores an
  older message when the missing one turns up later);
- an event without a sequence (a stage change, an erasure, a decision made before sequences
  existed) is never held.
Pure: time is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.sync.events import Event


@dataclass(frozen=True)
class Held:
    """An event held until its predecessor arrives, at the latest `until`."""

    event: Event
    until: datetime


@dataclass(frozen=True)
class LeadOrder:
    """What sync knows of a lead's routing sequence (module doc)."""

    lead_id: str
    last_sequence: int = 0
    held: tuple[Held, ...] = ()

    @property
    def held_until(self) -> datetime | None:
        """When the earliest hold runs out (None: nothing held)."""
        return min((h.until for h in self.held), default=None)


def arrange(
    order: LeadOrder, arriving: Sequence[Event], *, now: datetime, wait: timedelta
) -> tuple[list[Event], LeadOrder]:
    """The lead's events to queue now, in order (events without a sequence first, in arrival
    order, then the released routing events by sequence), and what stays held."""
    released = [event for event in arriving if event.sequence is None]
    waiting = {held.event.sequence: held for held in order.held}
    for event in arriving:
        if event.sequence is not None:
            # The same sequence twice (a replayed record) is one event: the first one seen.
            waiting.setdefault(event.sequence, Held(event, now + wait))
    pending = sorted(waiting.values(), key=lambda held: held.event.sequence or 0)
    # Every event up to the latest one whose hold ran out goes now, gaps before it given up.
    expired_through = max(
        (held.event.sequence or 0 for held in pending if held.until <= now), default=0
    )
    last = order.last_sequence
    kept: list[Held] = []
    for held in pending:
        sequence = held.event.sequence or 0
        if not kept and (sequence <= last + 1 or sequence <= expired_through):
            released.append(held.event)
            last = max(last, sequence)
        else:
            kept.append(held)
    return released, LeadOrder(order.lead_id, last_sequence=last, held=tuple(kept))


def skipped(last_sequence: int, released: Sequence[Event]) -> int:
    """How many sequences after `last_sequence` a release gave up on (never seen, passed over
    once a hold ran out)."""
    missing, expected = 0, last_sequence + 1
    for sequence in sorted({e.sequence for e in released if e.sequence is not None}):
        if sequence >= expected:
            missing += sequence - expected
            expected = sequence + 1
    return missing
