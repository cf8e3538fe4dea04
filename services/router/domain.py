"""The routing choice: pure functions, no I/O, no clock (time is an argument).

A lifecycle change goes through three steps:
1. `choose_route`: suppressed (with the reason), nurture (with the track), sdr (with the team
   chain: territory team, then its overflow teams; and the account owner, if any), or no
   decision at all (a stage that is not a trigger). Then `route_now`: a decision for a change
   whose triggering event is older than the backfill horizon is history instead (recorded with
   the reason, nothing started).
2. `assign_sdr`: the account owner if present and not away, else weighted round robin along
   the team chain, else the fallback queue. Needs the reps' loads, read under a team lock.
3. `sla_due_at`: when the owner must have accepted.
After a breach, `after_breach` picks the next rep, the manager (escalation) or nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from services.router.assignment import Assignment, RepLoad, assign_in_teams, away_reason
from services.router.routing_config import Rep, RoutingConfig, Sla
from services.router.segments import LeadFacts, lead_facts, matches
from services.router.suppression import is_expansion, suppression_reason
from shared.contracts import LifecycleChanged, Owner, Score, Stage


@dataclass(frozen=True)
class Suppressed:
    reason: str


@dataclass(frozen=True)
class ToNurture:
    track: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class AccountOwner:
    owner: Owner
    rep: Rep | None  # None: the owner is not in any team of the routing file
    account: str


@dataclass(frozen=True)
class ToSdr:
    teams: tuple[str, ...]
    territory: str | None
    account_owner: AccountOwner | None
    reasons: tuple[str, ...]

    @property
    def teams_to_lock(self) -> tuple[str, ...]:
        """The teams whose reps' loads this decision may change: the chain, and the account
        owner's team when the owner is a rep (an owner outside the routing file has no load)."""
        owner = self.account_owner
        owner_team = [owner.owner.team] if owner is not None and owner.rep is not None else []
        return tuple(sorted({*self.teams, *owner_team}))


@dataclass(frozen=True)
class History:
    """A change that would be routed (sdr or nurture), but whose triggering event happened
    before the backfill horizon (`route_now`): recorded with the reason, and nothing started:
    no rep, no SLA timer, no rep capacity, no nurture enrolment."""

    reason: str


Route = ToSdr | ToNurture | Suppressed | History


def choose_route(change: LifecycleChanged, config: RoutingConfig) -> Route | None:
    """Where a stage change sends the lead; None when the change calls for no decision (never
    `History`: whether to act now is `route_now`'s choice).

    Only the configured trigger stages are routed (sdr: mql by default; nurture: known, lead,
    recycled). A disqualification is recorded as a suppression so the lead's history says why
    it is not routed.
    """
    triggers = config.triggers
    if change.to_stage not in (*triggers.sdr, *triggers.nurture, Stage.DISQUALIFIED):
        return None
    lead = lead_facts(change, config)
    if reason := suppression_reason(change, lead=lead, config=config):
        return Suppressed(reason)
    reasons = (change.reason, *(c.reason for c in change.top_contributions))
    if change.to_stage in triggers.nurture:
        return ToNurture(track=nurture_track(lead, config), reasons=reasons)
    territory = None
    if change.account is not None and is_expansion(lead, config):
        assert config.suppression.expansion is not None
        first_team = config.suppression.expansion.team
        reasons = (f"expansion: existing customer {change.account.name}", *reasons)
    else:
        territory = next((t for t in config.territories if matches(t.when, lead)), None)
        first_team = territory.team if territory else config.default_team
    return ToSdr(
        teams=tuple(team.name for team in config.team_chain(first_team)),
        territory=territory.name if territory else None,
        account_owner=account_owner_of(change, config),
        reasons=reasons,
    )


def before_horizon(at: datetime, *, now: datetime, horizon: timedelta) -> bool:
    """Whether a stage change whose triggering event happened `at` is history at `now`: more
    than `horizon` ago. A change exactly `horizon` old is still acted on, and so is one from the
    future (a client clock ahead of ours: ingest corrects the skew only when `sentAt` is sent)."""
    return now - at > horizon


def route_now(
    route: Route | None, change: LifecycleChanged, *, now: datetime, horizon: timedelta
) -> Route | None:
    """What to do now about `change`, routed `route` by `choose_route`: a decision (sdr or
    nurture) for a change before the horizon (`before_horizon` of its `at`, the triggering
    event's time) becomes `History`, so that loading months of history (a backfill) assigns no
    rep and enrols no one for moments long past. Anything else is kept: a suppression or a
    stage that calls for no decision starts nothing, and what a change closes (its lead's open
    decisions) is closed for every new change, history or not (`repository.start_transitions`).
    """
    if not isinstance(route, ToSdr | ToNurture):
        return route
    if not before_horizon(change.at, now=now, horizon=horizon):
        return route
    return History(
        f"history: the stage change happened at {change.at.astimezone(UTC).isoformat()},"
        f" before the backfill horizon of {horizon / timedelta(hours=1):g} h"
    )


def nurture_track(lead: LeadFacts, config: RoutingConfig) -> str:
    return next(
        (t.track for t in config.nurture.tracks if matches(t.when, lead)), config.nurture.default
    )


def account_owner_of(change: LifecycleChanged, config: RoutingConfig) -> AccountOwner | None:
    """The owner of the lead's matched account, when the match is confident enough. An owner
    who is a rep in the routing file is that rep (with their team and absences); one who is
    not is still the owner (the CRM knows them), under `account_owners.team_label`."""
    account = change.account
    settings = config.account_owners
    if not settings.enabled or account is None:
        return None
    if settings.min_confidence == "strong" and account.confidence != "strong":
        return None
    label = f"{account.name} ({account.account_id})"
    for team in config.teams:
        for rep in team.reps:
            if rep.id == account.owner_id or (
                account.owner_email and rep.email.lower() == account.owner_email.lower()
            ):
                owner = Owner(id=rep.id, name=rep.name, email=rep.email, team=team.name)
                return AccountOwner(owner=owner, rep=rep, account=label)
    if not account.owner_email:
        return None
    owner = Owner(
        id=account.owner_id or account.owner_email,
        name=account.owner_email,
        email=account.owner_email,
        team=settings.team_label,
    )
    return AccountOwner(owner=owner, rep=None, account=label)


def assign_sdr(
    route: ToSdr, *, config: RoutingConfig, loads: Mapping[str, RepLoad], now: datetime
) -> Assignment:
    """Account owner first (unless away: inactive or out of office; owners are not bound by
    round-robin caps or hours), then round robin along the team chain, then the queue."""
    skipped: tuple[str, ...] = ()
    candidate = route.account_owner
    if candidate is not None:
        away = away_reason(candidate.rep, now) if candidate.rep else None
        if away is None:
            return Assignment(
                strategy="account_owner",
                owner=candidate.owner,
                rep_id=candidate.rep.id if candidate.rep else None,
                reasons=(f"account owner of {candidate.account}",),
            )
        skipped = (f"account owner of {candidate.account} skipped: {away}",)
    chosen = assign_in_teams(
        [config.team(name) for name in route.teams],
        loads=loads,
        now=now,
        queue=config.fallback_queue,
    )
    return replace(chosen, reasons=(*skipped, *chosen.reasons))


def sla_window(score: Score, sla: Sla) -> timedelta:
    """The most specific SLA: by priority (e.g. A1), then by grade, then the default."""
    if score.priority and score.priority in sla.by_priority:
        return sla.by_priority[score.priority]
    return sla.by_grade.get(score.grade, sla.default)


def sla_due_at(decided_at: datetime, *, score: Score, config: RoutingConfig) -> datetime:
    return decided_at + sla_window(score, config.sla)


@dataclass(frozen=True)
class Breached:
    """What the router knows about a decision whose SLA passed without acceptance."""

    teams: tuple[str, ...]
    tried: frozenset[str]  # owners who already had this lead (for this transition)
    reassignments: int  # decisions of this transition before this one was superseded
    strategy: str  # of the breached decision


def after_breach(
    breached: Breached, *, config: RoutingConfig, loads: Mapping[str, RepLoad], now: datetime
) -> Assignment | None:
    """Who gets the lead after an SLA breach; None when nothing new can be done (it stays where
    it is: with the manager it was escalated to, or in the queue until a rep is available).

    Up to `sla.reassign_at_most` reassignments go round robin to reps who have not had the lead;
    then (or when nobody is available) the lead is escalated to the manager of the first team
    in its chain that has one; without a manager it goes to the fallback queue.
    """
    if breached.strategy == "sla_escalated":
        return None
    chain = [config.team(name) for name in breached.teams]
    if breached.reassignments < config.sla.reassign_at_most:
        chosen = assign_in_teams(
            chain,
            loads=loads,
            now=now,
            queue=config.fallback_queue,
            exclude=breached.tried,
            strategy="sla_reassigned",
        )
        if chosen.owner is not None:
            return chosen
    for team in chain:
        if team.manager is not None:
            manager = team.manager
            return Assignment(
                strategy="sla_escalated",
                owner=Owner(id=manager.id, name=manager.name, email=manager.email, team=team.name),
                reasons=(f"escalated to the {team.name} manager",),
            )
    if breached.strategy == "fallback_queue":
        return None
    return Assignment(
        strategy="fallback_queue",
        queue=config.fallback_queue,
        reasons=("nobody left to reassign to and no manager to escalate to",),
    )
