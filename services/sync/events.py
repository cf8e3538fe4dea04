"""What sync delivers: one `Event` per consumed message, and the queue rows it becomes.

An event is the message as a destination receives it (`webhooks` builds the body): its type,
its id (the message's own idempotency key: `decision_id`, `withdrawal_id`, `transition_id` or
`request_id`, sent as `Idempotency-Key` and inside the body), its time, and the message's JSON
as `data`. `fan_out` makes one `Delivery` per destination that wants the event, in the lane
`lane_of` gives its lead: a lane is FIFO, so a lead's events reach a destination in the order
they were queued.

An erasure notice names several leads (the person's, and every lead merged into it); it is
queued in the lane of its first lead, the person's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from services.sync.destinations import Destination, EventKind
from shared.contracts import ErasureNotice, LifecycleChanged, RoutingDecision, RoutingWithdrawal

EVENT_TYPES: dict[EventKind, str] = {
    "decisions": "routing.decision",
    "withdrawals": "routing.withdrawal",
    "lifecycle": "lead.lifecycle",
    "erasures": "privacy.erasure",
}


def type_of(kind: str) -> str:
    """The webhook `type` of a stored event kind (a queue row's `event_kind`)."""
    return EVENT_TYPES[kind]  # type: ignore[index]


@dataclass(frozen=True)
class Event:
    """A message as sync delivers it. `sequence`: the lead's routing sequence (routing topics;
    None elsewhere and on decisions made before it existed). `received_at`: when ingest
    received what caused it, where the message says (the delivery latency counts from it)."""

    kind: EventKind
    event_id: str
    lead_id: str
    sequence: int | None
    route: str | None
    stage: str | None
    timestamp: datetime
    received_at: datetime | None
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return EVENT_TYPES[self.kind]


@dataclass(frozen=True)
class Delivery:
    """A queue row: `event` to `destination`, in `lane`."""

    destination: str
    lane: int
    event: Event


def event_of(value: BaseModel) -> Event:
    """The event of a consumed message (a contract sync subscribes to)."""
    data = value.model_dump(mode="json", by_alias=True)
    if isinstance(value, RoutingDecision):
        return Event(
            kind="decisions",
            event_id=value.decision_id,
            lead_id=value.lead_id,
            sequence=value.sequence,
            route=value.route,
            stage=str(value.stage),
            timestamp=value.stored_at or value.decided_at,
            received_at=value.received_at,
            data=data,
        )
    if isinstance(value, RoutingWithdrawal):
        return Event(
            kind="withdrawals",
            event_id=value.withdrawal_id,
            lead_id=value.lead_id,
            sequence=value.sequence,
            route=value.route,
            stage=None,
            timestamp=value.withdrawn_at,
            received_at=None,
            data=data,
        )
    if isinstance(value, LifecycleChanged):
        return Event(
            kind="lifecycle",
            event_id=value.transition_id,
            lead_id=value.lead_id,
            sequence=None,
            route=None,
            stage=str(value.to_stage),
            timestamp=value.at,
            received_at=value.received_at,
            data=data,
        )
    if isinstance(value, ErasureNotice):
        return Event(
            kind="erasures",
            event_id=value.request_id,
            lead_id=value.lead_ids[0],
            sequence=None,
            route=None,
            stage=None,
            timestamp=value.erased_at,
            received_at=None,
            data=data,
        )
    raise TypeError(f"sync does not deliver {type(value).__name__}")


def lane_of(lead_id: str, lanes: int) -> int:
    """The lane of a lead among `lanes`: stable across processes and restarts (not Python's
    salted `hash`), spread evenly."""
    digest = hashlib.blake2b(lead_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % lanes


def fan_out(events: Iterable[Event], destinations: Sequence[Destination]) -> list[Delivery]:
    """One delivery per event and destination that wants it, in the events' order; an erasure
    notice goes to every lane that holds one of its leads (`erasure_deliveries`)."""
    deliveries: list[Delivery] = []
    for event in events:
        for destination in destinations:
            if not destination.wants(event.kind, route=event.route, stage=event.stage):
                continue
            lanes = destination.config.concurrency
            if event.kind == "erasures":
                deliveries += erasure_deliveries(event, destination.name, lanes=lanes)
            else:
                deliveries.append(Delivery(destination.name, lane_of(event.lead_id, lanes), event))
    return deliveries


def erasure_deliveries(event: Event, destination: str, *, lanes: int) -> list[Delivery]:
    """The notice queued behind every lead it names, in each lane that holds one: a lane sends
    in order, so whatever of those leads was queued (or already on its way) when the erasure
    came reaches the CRM before a notice that erases it. Each copy has an id of its own (the
    request id, then `<request id>:<lane>`): a CRM applies every one it receives."""
    chosen = sorted({lane_of(lead_id, lanes) for lead_id in event.data["lead_ids"]})
    first = lane_of(event.lead_id, lanes)
    return [
        Delivery(
            destination,
            lane,
            event if lane == first else replace(event, event_id=f"{event.event_id}:{lane}"),
        )
        for lane in chosen
    ]
