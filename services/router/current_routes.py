"""One current route per lead, in an order a CRM can trust: pure, no I/O, no clock.

A lead's *current route* is the last decision the router sent about it (on `routing.sdr` or
`routing.nurture`) that still holds. What ends it is sent as a `RoutingWithdrawal` on
`routing.withdrawals`, and every message of a lead on those three topics takes the lead's next
`sequence` (1, 2, 3, ...), so a CRM reading several topics orders a lead's messages by it.

`sequenced` walks a batch's route events in message order, from each lead's stored
`CurrentRoute` (`router.routes`), and answers what to send, in order, and the leads' new rows:
- `Sent(decision)`: a decision goes out now (an sdr decision; a reassignment after an SLA
  breach; a nurture decision released once its lead settled). The current route, if any, is
  withdrawn first (`replaced`, or `sla_breached` when the decision supersedes it), then the
  decision becomes current.
- `Ended(lead, ...)`: a stage change that sends no decision now. A lead no longer routed
  (`not_routed`: a suppression, a disqualification) loses any current route; any other change
  (sales took the lead: sql, sqo, customer; a change before the backfill horizon; a new
  nurture stage, whose own decision is released later) ends a current *nurture* route only
  (`stage_changed`: an enrolment is for the stage the lead was in), while an sdr route stays
  with its owner.
A decision that a later change replaces before it was sent (a nurture decision still settling)
is never sent at all: the change closes it and its release finds it closed (handler).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from shared.contracts import RoutingDecision, RoutingWithdrawal

WITHDRAWAL_NAMESPACE = uuid.UUID("0b9f3d3e-7a51-4c8e-a0f2-3d6c1e9b5a47")


def withdrawal_id(decision_id: str) -> str:
    """A withdrawal's id: one per decision (a decision is withdrawn at most once), stable."""
    return str(uuid.uuid5(WITHDRAWAL_NAMESPACE, decision_id))


@dataclass(frozen=True, slots=True)
class CurrentRoute:
    """A lead's `router.routes` row: the last sequence it was given (0: none yet) and its
    current route (None: none)."""

    lead_id: str
    sequence: int = 0
    decision_id: str | None = None
    route: Literal["sdr", "nurture"] | None = None

    def row(self, *, at: datetime) -> dict[str, object]:
        """The row as written (every column of `router.routes`)."""
        return {
            "lead_id": self.lead_id,
            "sequence": self.sequence,
            "decision_id": self.decision_id,
            "route": self.route,
            "changed_at": at,
        }


@dataclass(frozen=True, slots=True)
class Sent:
    """A decision that goes out now (its `sequence` is filled in by `sequenced`)."""

    decision: RoutingDecision


@dataclass(frozen=True, slots=True)
class Ended:
    """A stage change of `lead_id` that sends no decision now; `not_routed`: the lead is no
    longer routed at all (its sdr route ends too). `reason` says why, for the withdrawal."""

    lead_id: str
    reason: str
    not_routed: bool


RouteEvent = Sent | Ended


@dataclass(frozen=True, slots=True)
class CurrentChange:
    """`routing.current` for a lead: its new current route, or None (a tombstone)."""

    lead_id: str
    decision: RoutingDecision | None


Message = RoutingDecision | RoutingWithdrawal | CurrentChange


@dataclass
class Sequenced:
    """What a batch sends, in order (decisions, withdrawals and `routing.current` changes),
    and the `router.routes` rows it changed (by lead)."""

    messages: list[Message] = field(default_factory=list)
    routes: dict[str, CurrentRoute] = field(default_factory=dict)

    @property
    def withdrawals(self) -> list[RoutingWithdrawal]:
        return [m for m in self.messages if isinstance(m, RoutingWithdrawal)]

    @property
    def decisions(self) -> list[RoutingDecision]:
        return [m for m in self.messages if isinstance(m, RoutingDecision)]


def sequenced(
    events: Iterable[RouteEvent], stored: Mapping[str, CurrentRoute], *, at: datetime
) -> Sequenced:
    """The messages `events` send, in order, from the leads' `stored` routes (a lead without
    one starts at sequence 0 with no route). `at` stamps the withdrawals. See the module doc."""
    out = Sequenced()
    for event in events:
        lead_id = event.decision.lead_id if isinstance(event, Sent) else event.lead_id
        now = out.routes.get(lead_id) or stored.get(lead_id) or CurrentRoute(lead_id)
        if isinstance(event, Sent):
            now = _send(event.decision, now, out, at=at)
        else:
            now = _end(event, now, out, at=at)
        out.routes[lead_id] = now
    out.routes = {lead: row for lead, row in out.routes.items() if row != stored.get(lead)}
    return out


def _send(
    decision: RoutingDecision, now: CurrentRoute, out: Sequenced, *, at: datetime
) -> CurrentRoute:
    if now.decision_id is not None and now.route is not None:
        breached = decision.supersedes == now.decision_id
        now = _withdraw(
            now,
            out,
            at=at,
            cause="sla_breached" if breached else "replaced",
            reason=_replaced_reason(decision, breached=breached),
            replaced_by=decision.decision_id,
        )
    sent = decision.model_copy(update={"sequence": now.sequence + 1})
    out.messages += [sent, CurrentChange(decision.lead_id, sent)]
    return replace(
        now, sequence=now.sequence + 1, decision_id=decision.decision_id, route=decision.route
    )


def _end(event: Ended, now: CurrentRoute, out: Sequenced, *, at: datetime) -> CurrentRoute:
    if now.decision_id is None or now.route is None:
        return now
    if not event.not_routed and now.route != "nurture":
        return now  # sales moved the lead on: its owner keeps it
    now = _withdraw(
        now,
        out,
        at=at,
        cause="not_routed" if event.not_routed else "stage_changed",
        reason=event.reason,
        replaced_by=None,
    )
    out.messages.append(CurrentChange(event.lead_id, None))
    return now


def _withdraw(
    now: CurrentRoute,
    out: Sequenced,
    *,
    at: datetime,
    cause: Literal["replaced", "not_routed", "stage_changed", "sla_breached"],
    reason: str,
    replaced_by: str | None,
) -> CurrentRoute:
    assert now.decision_id is not None
    assert now.route is not None
    out.messages.append(
        RoutingWithdrawal(
            withdrawal_id=withdrawal_id(now.decision_id),
            decision_id=now.decision_id,
            lead_id=now.lead_id,
            route=now.route,
            cause=cause,
            reason=reason,
            replaced_by=replaced_by,
            sequence=now.sequence + 1,
            withdrawn_at=at,
        )
    )
    return replace(now, sequence=now.sequence + 1, decision_id=None, route=None)


def _replaced_reason(decision: RoutingDecision, *, breached: bool) -> str:
    if breached:
        return decision.reasons[0] if decision.reasons else "SLA breached"
    if decision.route == "sdr":
        target = decision.owner.name if decision.owner else f"the {decision.queue} queue"
        return f"the lead became {decision.stage.value} and went to sales ({target})"
    return f"the lead became {decision.stage.value}: nurture track {decision.track}"
