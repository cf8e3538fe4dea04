"""Who in a team takes a lead: availability (active, out of office, working hours, daily cap)
and weighted round robin. Pure: no I/O, no clock (`now` is an argument).

Weighted round robin, fair and stateless apart from the day's counts: the next lead goes to the
available rep who would be least over their share after taking it, i.e. the smallest
`(assigned today + 1) / weight`; ties go to whoever was assigned longest ago, then to file order.
With weights 2:1 the sequence is A B A A B A A B ... Counts are per rep per local day (caps are
"per day" in the rep's own time zone), kept in PostgreSQL under a team lock so that two router
instances never hand out the same slot (see repository.lock_teams_and_read_loads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo

from services.router.routing_config import Rep, Team
from shared.contracts import Owner
from shared.contracts.routing import Strategy


@dataclass(frozen=True)
class RepLoad:
    """A rep's assignments so far on their current local day."""

    assigned_today: int = 0
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Assignment:
    """An owner (and the roster rep whose load grows, if any) or a queue, with the reasons."""

    strategy: Strategy
    owner: Owner | None = None
    rep_id: str | None = None
    queue: str | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(rep: Rep, now: datetime) -> date:
    """The rep's calendar day at `now`: the day their cap counts against."""
    return now.astimezone(_zone(rep.timezone)).date()


def away_reason(rep: Rep, now: datetime) -> str | None:
    """Why the rep cannot take any lead at `now` (inactive or out of office), else None."""
    if not rep.active:
        return f"{rep.id} inactive"
    today = local_day(rep, now)
    for absence in rep.out_of_office:
        if absence.start <= today <= absence.until:
            return f"{rep.id} out of office until {absence.until.isoformat()}"
    return None


def unavailable_reason(rep: Rep, *, load: RepLoad, now: datetime) -> str | None:
    """Why the rep cannot take a round-robin lead at `now`, else None."""
    if away := away_reason(rep, now):
        return away
    hours = rep.working_hours
    if hours is not None:
        local = now.astimezone(_zone(rep.timezone))
        weekday = local.strftime("%a").lower()
        if weekday not in hours.days or not hours.start <= local.time() < hours.end:
            return f"{rep.id} outside working hours ({rep.timezone} {local:%a %H:%M})"
    if rep.daily_cap is not None and load.assigned_today >= rep.daily_cap:
        return f"{rep.id} at daily cap {rep.daily_cap}"
    return None


def weighted_choice(candidates: Sequence[Rep], loads: Mapping[str, RepLoad]) -> Rep:
    """The available rep whose turn it is (see the module docstring). `candidates` non-empty."""

    def turn_key(indexed: tuple[int, Rep]) -> tuple[float, float, int]:
        index, rep = indexed
        load = loads.get(rep.id, RepLoad())
        last = load.last_assigned_at.timestamp() if load.last_assigned_at else float("-inf")
        return ((load.assigned_today + 1) / rep.weight, last, index)

    return min(enumerate(candidates), key=turn_key)[1]


def assign_in_teams(
    chain: Sequence[Team],
    *,
    loads: Mapping[str, RepLoad],
    now: datetime,
    queue: str,
    exclude: frozenset[str] = frozenset(),
    strategy: Strategy = "round_robin",
) -> Assignment:
    """Round robin in the first team of `chain` with someone available, else the fallback
    `queue`. Reps in `exclude` (they already had this lead and let it lapse) are skipped.
    Every skipped team is named in the reasons, with why each of its reps was skipped."""
    skipped: list[str] = []
    for position, team in enumerate(chain):
        available: list[Rep] = []
        why_not: list[str] = []
        for rep in team.reps:
            if rep.id in exclude:
                why_not.append(f"{rep.id} already had this lead")
            elif reason := unavailable_reason(rep, load=loads.get(rep.id, RepLoad()), now=now):
                why_not.append(reason)
            else:
                available.append(rep)
        if available:
            rep = weighted_choice(available, loads)
            return Assignment(
                # An overflow is worth naming, except on an SLA reassignment (the bigger news).
                strategy="overflow" if position and strategy == "round_robin" else strategy,
                owner=Owner(id=rep.id, name=rep.name, email=rep.email, team=team.name),
                rep_id=rep.id,
                reasons=(*skipped, f"{team.name}: round robin picked {rep.id}"),
            )
        skipped.append(f"nobody available in {team.name}: {'; '.join(why_not)}")
    return Assignment(strategy="fallback_queue", queue=queue, reasons=tuple(skipped))
