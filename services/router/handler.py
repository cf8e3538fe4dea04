"""The consumer handler: `leads.lifecycle`, `crm.feedback`, `router.commands` and
`privacy.erasures` in, `routing.sdr` / `routing.nurture` and `privacy.reports` out.

Per batch, in one transaction (the runner commits offsets only after it and the produce acks):
-1. A batch with an erasure notice, CRM feedback or an SLA check first locks every lead it names
   (`repository.lock_leads`: an advisory lock per lead id, in key order, one statement, which
   also answers which of them were erased, asked after the locks). Then each erasure is done
   (`_erase`: the leads' rows deleted, the leads remembered as erased, a report output), and
   the batch's messages about erased leads are dropped and counted
   (`leadflow_router_erased_lead_messages_dropped_total`). A batch of stage changes alone takes
   the same locks inside its first statement (`router.start_transitions`), which skips the
   transitions of erased leads the same way, without a round trip more: the hot path's
   statements are those counted below. How the locks close the race between an erasure and a
   batch of the same lead on another replica: `repository` module docstring.
0. The live routing version is read (`routing_versions.live_routing`: the live pointer, one
   primary-key read; a version's document is parsed once per process) and used for the whole
   batch: a publication reaches the batch after it commits, never half of a batch. Every
   decision records it (`routing_version`); nothing published fails the batch (`NoLiveRouting`:
   the runner retries), never a batch routed with nothing.
1. CRM feedback closes the lead's open decisions (their SLA timers stop). It goes first so that
   an acceptance and an SLA check in the same batch resolve in the rep's favour.
2. Every lifecycle change not seen before is routed by the pure domain (`choose_route`), unless
   its triggering event is older than the backfill horizon (`route_now`): then it is history,
   recorded with the reason beside the suppressions, and starts nothing (no rep, SLA timer, rep
   load or nurture track); it closes its lead's open decisions all the same (every new change
   does, in the batch's decided check).
3. SLA checks lock their decision rows; then the teams that assignments will touch are locked
   (repository lock order), the reps' loads are read once, and assignments are made in message
   order, counting each one in memory so a batch stays fair within itself.
4. What the batch decided is written in one statement.
Statements per batch, besides the runner's own and step 0's read: a batch without SLA checks
chooses its routes before asking the database anything else. With an sdr lead, steps 2 and 3
take one round trip (`repository.start_batch`) and step 4 another; with only nurture decisions,
suppressions and history, nothing depends on what is stored, so steps 2 to 4 are one statement
(`repository.record_first_decisions`, which skips replayed transitions); with no trigger at
all, only the decided check and closing. A batch with SLA checks takes up to seven, however
many checks it holds (the lead locks, the decided check, the decision locks, the team locks
with the loads; `_check_slas` adds the breaches and the transitions' owners so far; the write);
one with CRM feedback takes the lead locks before closing decisions. An erasure takes two
statements per notice after the lead locks (the deletes, then `ErasedLeads.remember`). However
a batch starts, its decided check and closing are one database function (`repository` module
docstring).

A first decision is stored with the stage change it answered (`router.decisions.change`), which
a simulation replays through a draft routing (`simulation`).

Exactly once: the first decision of a transition has a stable id (uuid5 of the transition) and a
unique row; a reassignment's id derives from the decision it supersedes, whose row lock and
`closed_at` make a second check a no-op. A replayed transition finds its decision or
suppression and emits nothing. An erasure notice delivered again deletes nothing and reports
again (zero rows); a lead erased stays erased (`router.erased_leads`), so no message about it
routes it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.router import repository
from services.router.assignment import Assignment, RepLoad, local_day
from services.router.current_routes import (
    CurrentChange,
    CurrentRoute,
    Ended,
    RouteEvent,
    Sent,
    sequenced,
)
from services.router.domain import (
    Breached,
    History,
    Route,
    Suppressed,
    ToNurture,
    ToSdr,
    after_breach,
    assign_sdr,
    choose_route,
    route_now,
    sla_due_at,
    sla_window,
)
from services.router.metrics import (
    ERASED_LEAD_MESSAGES_DROPPED,
    HISTORY,
    SLA_BREACHES,
    SLA_OUTCOMES,
    SUPPRESSIONS,
    WITHDRAWALS,
    decisions_of,
    speed_to_lead_of,
)
from services.router.repository import NewDecision, OpenDecision
from services.router.routing_config import RoutingConfig
from services.router.routing_versions import live_routing
from shared.config_versions import LiveSource
from shared.consumer import Message, Output
from shared.contracts import (
    CrmFeedback,
    ErasureNotice,
    LifecycleChanged,
    RouterCommand,
    RoutingDecision,
    RoutingWithdrawal,
)
from shared.privacy import erasure_report
from shared.topics import ROUTING_CURRENT, ROUTING_NURTURE, ROUTING_SDR, ROUTING_WITHDRAWALS

log = logging.getLogger(__name__)

CHANGED_STAGE = "lead changed stage"  # why a change closes its lead's open decisions
DECISION_NAMESPACE = uuid.UUID("5f0c3c55-4a1e-4f4e-9d7e-6c0f3b7a1d20")


def first_decision_id(transition_id: str) -> str:
    return str(uuid.uuid5(DECISION_NAMESPACE, transition_id))


def next_decision_id(superseded_id: str) -> str:
    return str(uuid.uuid5(DECISION_NAMESPACE, f"after-breach:{superseded_id}"))


@dataclass
class _Batch:
    """What one batch writes, gathered so that it is written in one statement, and the routing
    it decides under (`version` of the live routing, read once at the batch's start)."""

    now: datetime
    version: str
    config: RoutingConfig
    loads: dict[str, RepLoad]
    days: dict[str, date]
    decisions: list[NewDecision] = field(default_factory=list)
    suppressions: list[repository.Suppression] = field(default_factory=list)
    history: list[repository.Suppression] = field(default_factory=list)  # before the horizon
    assignments: list[tuple[str, date]] = field(default_factory=list)
    checked: list[repository.CheckedDecision] = field(default_factory=list)
    # What changes routes, in message order, with the transition that caused it (None: a
    # timer's check), so that `drop` can forget what a replayed transition caused.
    events: list[tuple[str | None, RouteEvent]] = field(default_factory=list)
    routes: dict[str, CurrentRoute] = field(default_factory=dict)  # stored, read after locks
    released: list[RoutingDecision] = field(default_factory=list)  # settled nurture, to send
    sent: list[RoutingDecision | RoutingWithdrawal | CurrentChange] = field(default_factory=list)
    changed_routes: list[CurrentRoute] = field(default_factory=list)

    def count(self, assignment: Assignment) -> None:
        if assignment.rep_id is not None and assignment.rep_id in self.days:
            before = self.loads.get(assignment.rep_id, RepLoad())
            self.loads[assignment.rep_id] = RepLoad(before.assigned_today + 1, self.now)
            self.assignments.append((assignment.rep_id, self.days[assignment.rep_id]))

    def emit(self, new: NewDecision, *, send: bool = True) -> None:
        """A new decision to store; `send`: it goes out now (not a nurture decision that waits
        for its lead to settle)."""
        self.decisions.append(new)
        if send:
            self.events.append((new.transition_id, Sent(new.decision)))

    def stamp_stored(self) -> None:
        """Stamp every decision as stored now, the batch's last step before the statement that
        writes it (the contract's `stored_at` and `speed_to_lead_ms`): the stored and the
        emitted copies agree, and the router's own time (locks, reads, choice) is counted."""
        at = datetime.now(UTC)
        self.decisions = [
            replace(
                new,
                decision=new.decision.model_copy(
                    update={
                        "stored_at": at,
                        "speed_to_lead_ms": _milliseconds(at - new.decision.received_at),
                    }
                ),
            )
            for new in self.decisions
        ]

    def sequence(self) -> None:
        """Give what goes out its lead's sequence, the withdrawals it causes, and the leads' new
        routes (`current_routes.sequenced`, from the routes read after the leads' locks): the
        decisions to store become the decisions as sent, and releases are stored as sent. After
        `stamp_stored`, so what is stored, sent and counted is the same."""
        stamped = {new.decision.decision_id: new.decision for new in self.decisions}
        events = [
            Sent(stamped.get(e.decision.decision_id, e.decision)) if isinstance(e, Sent) else e
            for _, e in self.events
        ]
        done = sequenced(events, self.routes, at=self.now)
        self.sent, self.changed_routes = done.messages, list(done.routes.values())
        as_sent = {decision.decision_id: decision for decision in done.decisions}
        self.decisions = [
            replace(new, decision=as_sent.get(new.decision.decision_id, new.decision))
            for new in self.decisions
        ]
        for released in self.released:
            decision = as_sent[released.decision_id]
            self.checked.append(
                repository.CheckedDecision(
                    decision.decision_id,
                    sequence=decision.sequence,
                    released_at=decision.released_at,
                    payload=orjson.Fragment(decision.model_dump_json(by_alias=True)),
                )
            )

    @property
    def withdrawals(self) -> list[RoutingWithdrawal]:
        return [m for m in self.sent if isinstance(m, RoutingWithdrawal)]

    @property
    def outputs(self) -> list[Output]:
        """What `sequence` sent, in order: each decision on its route's topic, each withdrawal
        on routing.withdrawals, each lead's new current route on routing.current (None: a
        tombstone)."""
        return [_output(message) for message in self.sent]

    @property
    def not_routed(self) -> list[repository.Suppression]:
        """The `router.suppressions` rows to write: the suppressions and the history (a change
        not routed is recorded there with its reason, whatever the reason)."""
        return [*self.suppressions, *self.history]

    def drop(self, transitions: set[str]) -> None:
        """Forget the first decisions, the suppressions and the history of `transitions` (found
        already decided by the statement that wrote the rest)."""
        self.decisions = [new for new in self.decisions if new.transition_id not in transitions]
        self.suppressions = [s for s in self.suppressions if s.transition_id not in transitions]
        self.history = [h for h in self.history if h.transition_id not in transitions]
        self.events = [(t, e) for t, e in self.events if t not in transitions]

    def observe(self) -> None:
        """Metrics and logs of what the batch decided and sent, once it is written."""
        for message in self.sent:
            if isinstance(message, RoutingWithdrawal):
                WITHDRAWALS.labels(route=message.route, cause=message.cause).inc()
            if not isinstance(message, RoutingDecision):
                continue
            decisions_of(message.route, message.strategy or "").inc()
            if message.supersedes is None:  # speed-to-lead is the first decision's
                speed_to_lead_of(message.route).observe(message.speed_to_lead_ms / 1000)
        for suppression in self.suppressions:
            SUPPRESSIONS.inc()
            log.info("lead %s not routed: %s", suppression.lead_id, suppression.reason)
        if self.history:
            # One line per batch, not per change: a backfill brings them by the hundred thousand.
            HISTORY.inc(len(self.history))
            log.info(
                "%d stage changes recorded as history (before the backfill horizon), not routed",
                len(self.history),
            )


class RouterHandler:
    """`routing`: where each batch reads its routing (`routing_versions.ROUTING` in the service;
    a `Pinned` configuration in a test or a benchmark)."""

    def __init__(
        self,
        routing: LiveSource[RoutingConfig],
        *,
        sla_recheck: timedelta,
        backfill_horizon: timedelta,
    ) -> None:
        self._routing = routing
        self._sla_recheck = sla_recheck
        self._backfill_horizon = backfill_horizon

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        now = datetime.now(UTC)
        values = [message.value for message in messages]
        notices = [value for value in values if isinstance(value, ErasureNotice)]
        rest = [value for value in values if not isinstance(value, ErasureNotice)]
        reports: list[Output] = []
        if notices or any(isinstance(value, CrmFeedback | RouterCommand) for value in rest):
            # Step -1 (module doc): every lead the batch names locked in one statement, first.
            erased = await repository.lock_leads(session, _leads_named(values))
            for notice in notices:
                reports += await self._erase(session, notice, now)
                erased.update(notice.lead_ids)
            rest = _without_erased(rest, erased)
        if not rest:
            return reports
        return [*reports, *await self._route_batch(rest, session, now)]

    async def _route_batch(
        self, values: list[BaseModel], session: AsyncSession, now: datetime
    ) -> list[Output]:
        # Once per batch, never again inside it (see the module doc, step 0).
        version, config = await live_routing(self._routing, session)
        changes: list[LifecycleChanged] = []
        feedback: list[repository.Feedback] = []
        checks: list[str] = []
        for value in values:
            if isinstance(value, LifecycleChanged):
                changes.append(value)
            elif isinstance(value, CrmFeedback):
                feedback.append(
                    repository.Feedback(
                        lead_id=value.lead_id,
                        email=value.email,
                        reason=f"crm: {value.outcome}",
                        at=value.at,
                    )
                )
            elif isinstance(value, RouterCommand):  # sla_check, nurture_release: a timer
                checks.append(value.decision_id)
        checks = list(dict.fromkeys(checks))  # a decision checked twice in a batch: once
        if feedback:
            await self._close_on_feedback(session, feedback, now)

        if checks:
            fresh, routes, locked, loads, days, stored = await self._start_with_checks(
                session, changes, checks, config=config, now=now
            )
        else:
            candidates = _first_of_each_transition(changes)
            routes = [self._choose(c, config=config, now=now) for c in candidates]
            if not any(isinstance(r, ToSdr) for r in routes) and any(routes):
                batch = _Batch(now=now, version=version, config=config, loads={}, days={})
                await self._decide_in_one_statement(session, candidates, routes, batch=batch)
                batch.observe()
                return batch.outputs
            fresh, routes, loads, days, stored = await self._start(
                session, candidates, routes, config=config, now=now
            )
            locked = {}
        batch = _Batch(
            now=now, version=version, config=config, loads=loads, days=days, routes=stored
        )
        self._route_all(fresh, routes, batch)
        await self._check_timers(session, [locked[c] for c in checks if c in locked], batch)

        batch.stamp_stored()
        batch.sequence()
        await repository.record_batch(
            session,
            decisions=batch.decisions,
            suppressions=batch.not_routed,
            assignments=batch.assignments,
            at=now,
            checked=batch.checked,
            withdrawals=batch.withdrawals,
            routes=batch.changed_routes,
        )
        batch.observe()
        return batch.outputs

    # ---- erasure ------------------------------------------------------------------------------

    async def _erase(
        self, session: AsyncSession, notice: ErasureNotice, now: datetime
    ) -> list[Output]:
        """The router's part of an erasure, under the leads' locks (taken by the caller, in the
        batch's first statement): every row about the leads deleted (`repository.erase_leads`),
        the leads remembered as erased in the same transaction, and what to send once it
        commits: the report, and a `routing.current` tombstone per lead. A notice delivered
        again deletes nothing and reports again (zero rows)."""
        erased = await repository.erase_leads(session, notice.lead_ids)
        await repository.ERASED_LEADS.remember(session, notice.lead_ids)
        log.info(
            "erasure %s: %d leads; deleted %d decisions, %d suppressions, %d SLA breaches;"
            " %d simulation results scrubbed",
            notice.request_id,
            len(set(notice.lead_ids)),
            erased.decisions,
            erased.suppressions,
            erased.sla_breaches,
            erased.simulations,
        )
        report = erasure_report(
            notice,
            service="router",
            erased=erased.deleted(),
            anonymised={"simulations": erased.simulations},
            at=now,
        )
        # routing.current forgets the leads: a tombstone each (a key never written is a no-op).
        tombstones = [
            _output(CurrentChange(lead_id, None)) for lead_id in sorted(set(notice.lead_ids))
        ]
        return [report, *tombstones]

    # ---- a batch's first statements --------------------------------------------------------

    async def _start(
        self,
        session: AsyncSession,
        candidates: list[LifecycleChanged],
        routes: list[Route | None],
        *,
        config: RoutingConfig,
        now: datetime,
    ) -> tuple[
        list[LifecycleChanged],
        list[Route | None],
        dict[str, RepLoad],
        dict[str, date],
        dict[str, CurrentRoute],
    ]:
        """A batch without SLA checks, its routes chosen for every change first (pure): the
        teams to lock are known before the database is asked anything, so the decided check,
        the team locks and the loads take one round trip (`repository.start_batch`); a batch
        that routes no lead needs only the decided check. A change replayed (its transition
        already decided) is dropped afterwards: at worst its teams were locked. The leads'
        current routes come back in the same round trip."""
        teams = {t for r in routes if isinstance(r, ToSdr) for t in r.teams_to_lock}
        pairs = [(c.transition_id, c.lead_id) for c in candidates]
        if teams:
            days = _days(config, teams, now)
            decided, loads = await repository.start_batch(
                session, pairs, at=now, reason=CHANGED_STAGE, teams=teams, days=days
            )
        else:
            days, loads = {}, {}
            decided = await repository.start_transitions(
                session, pairs, at=now, reason=CHANGED_STAGE
            )
        _count_dropped(decided)
        kept = [
            (c, r)
            for c, r in zip(candidates, routes, strict=True)
            if c.transition_id not in decided
        ]
        return [c for c, _ in kept], [r for _, r in kept], loads, days, decided.routes

    async def _decide_in_one_statement(
        self,
        session: AsyncSession,
        candidates: list[LifecycleChanged],
        routes: list[Route | None],
        *,
        batch: _Batch,
    ) -> None:
        """A batch of nurture decisions, suppressions and history only (no SLA check, no sdr
        lead; a batch of backfilled changes is one of these, whatever their stages): what
        it decides depends on nothing stored, so it is decided for every change first and the
        decided check, the closing and the writes go in one statement
        (`repository.record_first_decisions`), which skips the rows of transitions already
        decided; those are then dropped from what `batch` (empty so far) emits. Nothing goes
        out at once here (a nurture decision settles first), except the withdrawals of routes
        the batch ends (a suppression; a nurture lead that moved on), which the statement's
        current routes tell: those, rarely any, are written by a second statement."""
        self._route_all(candidates, routes, batch)
        batch.stamp_stored()
        decided = await repository.record_first_decisions(
            session,
            [(c.transition_id, c.lead_id) for c in candidates],
            decisions=batch.decisions,
            suppressions=batch.not_routed,
            at=batch.now,
            reason=CHANGED_STAGE,
        )
        _count_dropped(decided)
        batch.drop(decided)
        batch.routes = decided.routes
        batch.sequence()
        if batch.sent:
            await repository.record_batch(
                session,
                decisions=(),
                suppressions=(),
                assignments=(),
                at=batch.now,
                withdrawals=batch.withdrawals,
                routes=batch.changed_routes,
            )

    async def _start_with_checks(
        self,
        session: AsyncSession,
        changes: list[LifecycleChanged],
        checks: list[str],
        *,
        config: RoutingConfig,
        now: datetime,
    ) -> tuple[
        list[LifecycleChanged],
        list[Route | None],
        dict[str, OpenDecision],
        dict[str, RepLoad],
        dict[str, date],
        dict[str, CurrentRoute],
    ]:
        """A batch with timer checks (SLA, nurture release): their decision rows are locked
        between the decided check and the team locks (the lock order), and their teams are
        known only once read. The current routes of the checked decisions' leads are read
        after the rows are locked (the leads' locks were taken first, step -1)."""
        decided = await repository.start_transitions(
            session, [(c.transition_id, c.lead_id) for c in changes], at=now, reason=CHANGED_STAGE
        )
        _count_dropped(decided)
        fresh: list[LifecycleChanged] = []
        for change in changes:
            if change.transition_id not in decided:
                decided.add(change.transition_id)
                fresh.append(change)
        routes = [self._choose(c, config=config, now=now) for c in fresh]
        locked = await repository.lock_decisions(session, checks)
        stored = await repository.read_routes(
            session, {d.lead_id for d in locked.values()} - set(decided.routes)
        )
        teams = {t for r in routes if isinstance(r, ToSdr) for t in r.teams_to_lock}
        teams |= {t for d in locked.values() if d.route == "sdr" for t in _chain(d, config)}
        days = _days(config, teams, now)
        loads = await repository.lock_teams_and_read_loads(session, teams=teams, days=days)
        return fresh, routes, locked, loads, days, {**stored, **decided.routes}

    # ---- lifecycle changes ---------------------------------------------------------------------

    def _choose(
        self, change: LifecycleChanged, *, config: RoutingConfig, now: datetime
    ) -> Route | None:
        """The change's route as the batch's routing says, unless it is history by now."""
        route = choose_route(change, config)
        return route_now(route, change, now=now, horizon=self._backfill_horizon)

    def _route_all(
        self, changes: list[LifecycleChanged], routes: list[Route | None], batch: _Batch
    ) -> None:
        """Decide each routed change in message order; a decision whose lead changes stage
        again later in the batch is closed at birth. A change that calls for no decision may
        still end its lead's nurture route (`current_routes`)."""
        later_change = {c.lead_id: i for i, c in enumerate(changes)}  # last change per lead
        for index, (change, route) in enumerate(zip(changes, routes, strict=True)):
            if route is not None:
                closed_by_later = later_change[change.lead_id] > index
                self._route(change, route, batch, closed_by_later=closed_by_later)
            else:
                moved = f"the lead moved to {change.to_stage.value}"
                ended = Ended(change.lead_id, reason=moved, not_routed=False)
                batch.events.append((change.transition_id, ended))

    def _route(
        self, change: LifecycleChanged, route: Route, batch: _Batch, *, closed_by_later: bool
    ) -> None:
        if isinstance(route, Suppressed | History):
            row = repository.Suppression(
                transition_id=change.transition_id,
                lead_id=change.lead_id,
                email=change.profile.email,
                stage=change.to_stage.value,
                reason=route.reason,
            )
            (batch.suppressions if isinstance(route, Suppressed) else batch.history).append(row)
            ended = Ended(
                change.lead_id, reason=route.reason, not_routed=isinstance(route, Suppressed)
            )
            batch.events.append((change.transition_id, ended))
            return
        if isinstance(route, ToNurture):
            decision = self._decision(
                change,
                batch=batch,
                assignment=Assignment(strategy="nurture_track"),
                track=route.track,
                territory=None,
                reasons=route.reasons,
            )
            batch.emit(
                NewDecision(
                    decision=decision,
                    transition_id=change.transition_id,
                    closed_reason=CHANGED_STAGE if closed_by_later else None,
                    change=change,
                    release_at=None if closed_by_later else batch.now + batch.config.nurture.settle,
                ),
                send=False,  # it settles first (the decision timer releases it)
            )
            return
        assignment = assign_sdr(route, config=batch.config, loads=batch.loads, now=batch.now)
        batch.count(assignment)
        decision = self._decision(
            change,
            batch=batch,
            assignment=assignment,
            track=None,
            territory=route.territory,
            reasons=(*route.reasons, *assignment.reasons),
        )
        batch.emit(
            NewDecision(
                decision=decision,
                transition_id=change.transition_id,
                teams=route.teams,
                closed_reason=CHANGED_STAGE if closed_by_later else None,
                change=change,
            )
        )

    def _decision(
        self,
        change: LifecycleChanged,
        *,
        batch: _Batch,
        assignment: Assignment,
        track: str | None,
        territory: str | None,
        reasons: tuple[str, ...],
    ) -> RoutingDecision:
        sdr = track is None
        now = batch.now
        profile = change.profile
        name = " ".join(p for p in (profile.first_name, profile.last_name) if p) or None
        return RoutingDecision(
            decision_id=first_decision_id(change.transition_id),
            transition_id=change.transition_id,
            lead_id=change.lead_id,
            route="sdr" if sdr else "nurture",
            email=profile.email,
            name=name,
            company=profile.company
            or (change.firmographics.company_name if change.firmographics else None),
            stage=change.to_stage,
            score=change.score,
            owner=assignment.owner,
            queue=assignment.queue,
            track=track,
            strategy=assignment.strategy,
            territory=territory,
            routing_version=batch.version,
            reasons=list(reasons),
            account_id=change.account_id,
            received_at=change.received_at,
            decided_at=now,
            sla_due_at=sla_due_at(now, score=change.score, config=batch.config) if sdr else None,
            speed_to_lead_ms=_milliseconds(now - change.received_at),
        )

    # ---- CRM feedback --------------------------------------------------------------------------

    async def _close_on_feedback(
        self, session: AsyncSession, feedback: list[repository.Feedback], now: datetime
    ) -> None:
        """Any outcome from the CRM means sales has the lead: its open decisions are closed.
        A lead the router never routed is not an error here (score dead-letters unknown leads)."""
        for due, acted_at in await repository.close_on_feedback(session, feedback, at=now):
            if due is not None:
                SLA_OUTCOMES.labels(outcome="met" if acted_at <= due else "breached").inc()

    # ---- SLA checks ----------------------------------------------------------------------------

    async def _check_timers(
        self, session: AsyncSession, decisions: list[OpenDecision], batch: _Batch
    ) -> None:
        """A batch's timer checks, in message order, on their locked decision rows: nurture
        decisions at the end of their settle time are released, then the SLA checks."""
        for decision in decisions:
            if decision.route == "nurture" and not decision.closed and not decision.sent:
                # No stage change closed it while it settled: it goes out now.
                released = decision.decision.model_copy(update={"released_at": batch.now})
                batch.released.append(released)
                batch.events.append((None, Sent(released)))
        await self._check_slas(session, [d for d in decisions if d.route == "sdr"], batch)

    async def _check_slas(
        self, session: AsyncSession, decisions: list[OpenDecision], batch: _Batch
    ) -> None:
        """A batch's SLA checks, in message order, on their locked decision rows. A decision
        still open and past its `sla_due_at` is breached: the breach is recorded (once per
        decision), then the lead is reassigned or escalated (a new decision superseding it,
        which is closed), or left where it is and looked at again later. Two statements for
        all the checks (the breaches, then the owners so far of their transitions); the rest
        is written with the batch. A timer's burst of checks costs the hot leads sharing
        their batch a few ms, not a round trip per check."""
        now = batch.now
        breached = [
            d
            for d in decisions
            if not d.closed and d.sla_due_at is not None and now >= d.sla_due_at
        ]  # the others were accepted, superseded, or claimed early: nothing to do
        if not breached:
            return
        SLA_BREACHES.inc(await repository.record_breaches(session, breached, at=now))
        owners = await repository.get_transition_owners(
            session, [d.transition_id for d in breached]
        )
        for decision in breached:
            tried, decisions_so_far = owners.get(decision.transition_id, (set(), 1))
            self._after_breach(
                decision, tried=tried, decisions_so_far=decisions_so_far, batch=batch
            )

    def _after_breach(
        self, breached: OpenDecision, *, tried: set[str], decisions_so_far: int, batch: _Batch
    ) -> None:
        now = batch.now
        assignment = after_breach(
            Breached(
                teams=_chain(breached, batch.config),
                tried=frozenset(tried),
                reassignments=decisions_so_far - 1,
                strategy=breached.strategy or "",
            ),
            config=batch.config,
            loads=batch.loads,
            now=now,
        )
        if assignment is None:
            # Nothing new to do: the lead stays where it is. Escalated: the timer stops. Queued:
            # look again later (a rep's working day may have started).
            escalated = breached.strategy == "sla_escalated"
            batch.checked.append(
                repository.CheckedDecision(
                    breached.decision_id,
                    next_check_at=None if escalated else now + self._sla_recheck,
                )
            )
            return
        batch.count(assignment)
        previous = breached.decision
        who = previous.owner.id if previous.owner else f"queue {previous.queue}"
        window = sla_window(previous.score, batch.config.sla)
        decision = previous.model_copy(
            update={
                "decision_id": next_decision_id(previous.decision_id),
                "owner": assignment.owner,
                "queue": assignment.queue,
                "strategy": assignment.strategy,
                "supersedes": previous.decision_id,
                "reasons": [
                    f"SLA breached: {who} did not accept within {_duration(window)}",
                    *assignment.reasons,
                    *previous.reasons,
                ],
                "decided_at": now,
                "routing_version": batch.version,
                "sla_due_at": sla_due_at(now, score=previous.score, config=batch.config),
                "speed_to_lead_ms": _milliseconds(now - previous.received_at),
            }
        )
        # model_copy does not validate; the contract's checks must hold for what CRMs receive.
        decision = RoutingDecision.model_validate(decision.model_dump())
        batch.checked.append(
            repository.CheckedDecision(
                breached.decision_id,
                closed_at=now,
                closed_reason=f"SLA breached: {assignment.strategy}",
            )
        )
        batch.emit(
            NewDecision(
                decision=decision, transition_id=breached.transition_id, teams=breached.teams
            )
        )
        log.info(
            "lead %s: SLA of decision %s breached; %s",
            breached.lead_id,
            breached.decision_id,
            assignment.strategy,
        )


def _output(message: RoutingDecision | RoutingWithdrawal | CurrentChange) -> Output:
    """The record of a message a batch sends (`_Batch.sequence`), keyed by its lead."""
    if isinstance(message, RoutingDecision):
        topic = ROUTING_SDR if message.route == "sdr" else ROUTING_NURTURE
        return Output(topic, key=message.lead_id, value=message)
    if isinstance(message, RoutingWithdrawal):
        return Output(ROUTING_WITHDRAWALS, key=message.lead_id, value=message)
    return Output(ROUTING_CURRENT, key=message.lead_id, value=message.decision)


def _lead_of(value: BaseModel) -> str | None:
    """The lead a message names by id (None: a CRM report naming its lead by email alone)."""
    if isinstance(value, LifecycleChanged | CrmFeedback | RouterCommand):
        return value.lead_id
    return None


def _leads_named(values: Sequence[BaseModel]) -> set[str]:
    """Every lead id the batch names: its messages' leads and its erasures' leads."""
    named = {lead_id for value in values if (lead_id := _lead_of(value)) is not None}
    for value in values:
        if isinstance(value, ErasureNotice):
            named.update(value.lead_ids)
    return named


_KINDS = {LifecycleChanged: "stage change", CrmFeedback: "crm feedback", RouterCommand: "sla check"}


def _without_erased(values: list[BaseModel], erased: set[str]) -> list[BaseModel]:
    """The messages whose lead was not erased; the others are dropped and counted."""
    if not erased:
        return values
    kept: list[BaseModel] = []
    for value in values:
        if _lead_of(value) in erased:
            ERASED_LEAD_MESSAGES_DROPPED.labels(kind=_KINDS[type(value)]).inc()
        else:
            kept.append(value)
    return kept


def _count_dropped(skipped: repository.Skipped) -> None:
    """Count the stage changes skipped because their lead was erased (`Skipped.erased`)."""
    if skipped.erased:
        ERASED_LEAD_MESSAGES_DROPPED.labels(kind="stage change").inc(len(skipped.erased))


def _days(config: RoutingConfig, teams: set[str], now: datetime) -> dict[str, date]:
    """Each rep of the teams and their local day (loads are counted per local day)."""
    return {rep.id: local_day(rep, now) for name in sorted(teams) for rep in config.team(name).reps}


def _chain(decision: OpenDecision, config: RoutingConfig) -> tuple[str, ...]:
    """The decision's team chain as the batch's routing knows it (teams since removed from the
    routing are dropped; nothing left: the default team's chain)."""
    known = {team.name for team in config.teams}
    chain = tuple(t for t in decision.teams if t in known)
    return chain or tuple(t.name for t in config.team_chain(config.default_team))


def _first_of_each_transition(changes: list[LifecycleChanged]) -> list[LifecycleChanged]:
    """The changes in message order, a transition seen twice in a batch only once (the first)."""
    first: dict[str, LifecycleChanged] = {}
    for change in changes:
        first.setdefault(change.transition_id, change)
    return list(first.values())


def _milliseconds(delta: timedelta) -> int:
    return max(int(delta / timedelta(milliseconds=1)), 0)


def _duration(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
