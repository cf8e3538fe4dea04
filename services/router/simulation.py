"""A routing simulation's core: recent MQLs replayed through the live routing and through a draft,
to show who would have received what. Pure: no I/O, no clock (each change is replayed at the
time the router decided it).

What is replayed (`Replay.feed`, chunk by chunk): stage changes the router answered with a first
sdr decision, in the order it decided them, each at its original decision time, so working
hours, out of office and the reps' local days are as they were then. Each change goes through
the router's own domain functions (`choose_route`, then `assign_sdr`): what the simulation shows
is what the router would have done. The backfill horizon plays no part (each change was live
when it was decided).

Each routing is replayed on its own, with the reps' loads kept in memory from empty
(`SimulatedLoads`: assignments per rep and local day, and the last one's time), so round-robin
turns and daily caps play out as they would have under that routing alone, not as they did
under whatever was live at the time (SLA reassignments are not replayed).

Where a routing sends a change (`Outcome`): an owner (a rep of the routing, or an account owner
outside it), the fallback queue, or not to sales at all (suppressed, a nurture track, or no
decision: a draft may change the triggers or the suppression). A lead *gets another owner* when
the two routings' outcomes differ in owner, queue, or whether it reaches sales.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.router.assignment import Assignment, RepLoad, local_day
from services.router.domain import Suppressed, ToNurture, ToSdr, assign_sdr, choose_route
from services.router.routing_config import Rep, RoutingConfig
from shared.contracts import LifecycleChanged

EXAMPLES = 50
"""How many of the leads that get another owner a result lists (it counts them all)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where one routing sends one lead: an owner (with their team), a queue, or not to sales
    (`not_to_sales` says why)."""

    owner_id: str | None = None
    owner_name: str | None = None
    team: str | None = None
    queue: str | None = None
    not_to_sales: str | None = None

    @property
    def target(self) -> tuple[str, str | None]:
        """What "another owner" compares: the owner, else the queue, else not to sales."""
        if self.owner_id is not None:
            return ("owner", self.owner_id)
        if self.queue is not None:
            return ("queue", self.queue)
        return ("not to sales", None)

    def view(self) -> dict[str, str | None]:
        return {
            "owner": self.owner_id,
            "owner_name": self.owner_name,
            "team": self.team,
            "queue": self.queue,
            "not_to_sales": self.not_to_sales,
        }


class SimulatedLoads:
    """The reps' loads of one replay, in memory from empty: each rep's assignments on their
    current local day and the last one's time, read by `assign_sdr` as the handler's loads are
    (`RepLoad` by rep id) and counted as the handler counts them. A change replayed on a later
    local day starts the rep's count again (daily caps are per local day). Changes must be
    counted in time order."""

    def __init__(self, config: RoutingConfig) -> None:
        self._reps: dict[str, Rep] = {rep.id: rep for team in config.teams for rep in team.reps}
        self._current: dict[str, tuple[date, RepLoad]] = {}

    def at(self, now: datetime) -> Mapping[str, RepLoad]:
        """The loads as they stand at `now` (a count of an earlier local day is no load)."""
        return _LoadsAt(self, now)

    def load_of(self, rep_id: str, now: datetime) -> RepLoad | None:
        """The rep's load on their local day at `now`; None: nothing assigned that day."""
        current = self._current.get(rep_id)
        rep = self._reps.get(rep_id)
        if current is None or rep is None or current[0] != local_day(rep, now):
            return None
        return current[1]

    def count(self, assignment: Assignment, now: datetime) -> None:
        """One more lead for the assignment's rep at `now` (an owner outside the routing, or a
        queue, has no load)."""
        rep = self._reps.get(assignment.rep_id) if assignment.rep_id is not None else None
        if rep is None:
            return
        before = self.load_of(rep.id, now) or RepLoad()
        self._current[rep.id] = (local_day(rep, now), RepLoad(before.assigned_today + 1, now))

    def reps_with_a_load(self) -> Iterator[str]:
        return iter(self._current)


class _LoadsAt(Mapping[str, RepLoad]):
    """`SimulatedLoads` as a mapping at one instant: what `assign_sdr` reads."""

    def __init__(self, loads: SimulatedLoads, now: datetime) -> None:
        self._loads = loads
        self._now = now

    def __getitem__(self, rep_id: str) -> RepLoad:
        load = self._loads.load_of(rep_id, self._now)
        if load is None:
            raise KeyError(rep_id)
        return load

    def __iter__(self) -> Iterator[str]:
        return (r for r in self._loads.reps_with_a_load() if r in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def outcome_of(
    change: LifecycleChanged, *, config: RoutingConfig, loads: SimulatedLoads, at: datetime
) -> Outcome:
    """Where `config` sends `change` at `at` with these loads, counting the assignment in
    `loads`: the router's `choose_route`, then `assign_sdr`."""
    route = choose_route(change, config)
    if isinstance(route, Suppressed):
        return Outcome(not_to_sales=f"suppressed: {route.reason}")
    if isinstance(route, ToNurture):
        return Outcome(not_to_sales=f"nurture track {route.track}")
    if not isinstance(route, ToSdr):
        return Outcome(not_to_sales=f"no decision: {change.to_stage.value} is not a trigger")
    assignment = assign_sdr(route, config=config, loads=loads.at(at), now=at)
    loads.count(assignment, at)
    owner = assignment.owner
    if owner is None:
        return Outcome(queue=assignment.queue)
    return Outcome(owner_id=owner.id, owner_name=owner.name, team=owner.team)


class Tally:
    """Counts of outcomes per side (e.g. "live" and "draft"): per team and per owner (owners
    with their name and team), per queue, and not to sales. `rows` lists every team, owner and
    queue that any side counted, each with a count per side (0 where none): bounded by the
    number of teams, owners and queues, not of leads."""

    def __init__(self, sides: Sequence[str]) -> None:
        self._sides = tuple(sides)
        self._teams: dict[str, Counter[str]] = {side: Counter() for side in sides}
        self._owners: dict[str, Counter[str]] = {side: Counter() for side in sides}
        self._queues: dict[str, Counter[str]] = {side: Counter() for side in sides}
        self._not_to_sales: Counter[str] = Counter()
        self._who: dict[str, tuple[str | None, str | None]] = {}  # owner id: name, team

    def add(self, side: str, outcome: Outcome) -> None:
        if outcome.owner_id is not None:
            self._owners[side][outcome.owner_id] += 1
            # The last side's name and team win: with ("live", "draft"), the draft's.
            self._who[outcome.owner_id] = (outcome.owner_name, outcome.team)
            if outcome.team is not None:
                self._teams[side][outcome.team] += 1
        elif outcome.queue is not None:
            self._queues[side][outcome.queue] += 1
        else:
            self._not_to_sales[side] += 1

    def rows(self) -> dict[str, Any]:
        """`teams`, `reps` and `queues` (lists of rows sorted by name, each with a count per
        side) and `not_to_sales` (a count per side)."""

        def per_side(counters: dict[str, Counter[str]], key: str) -> dict[str, int]:
            return {side: counters[side][key] for side in self._sides}

        teams = sorted({t for side in self._sides for t in self._teams[side]})
        owners = sorted(
            {o for side in self._sides for o in self._owners[side]},
            key=lambda o: (self._who[o][1] or "", o),
        )
        queues = sorted({q for side in self._sides for q in self._queues[side]})
        return {
            "teams": [{"team": t, **per_side(self._teams, t)} for t in teams],
            "reps": [
                {
                    "rep_id": o,
                    "name": self._who[o][0],
                    "team": self._who[o][1],
                    **per_side(self._owners, o),
                }
                for o in owners
            ],
            "queues": [{"queue": q, **per_side(self._queues, q)} for q in queues],
            "not_to_sales": {side: self._not_to_sales[side] for side in self._sides},
        }


@dataclass(frozen=True, slots=True)
class DecidedChange:
    """A stage change to replay and when the router decided it (the replay's instant)."""

    change: LifecycleChanged
    decided_at: datetime


class Replay:
    """The live routing and a draft replayed side by side (see the module doc). Feed it the
    changes in decision order, in as many chunks as suits (memory: the counts and `EXAMPLES`
    listed changes, whatever the number of changes); `result` is a bounded JSON object."""

    def __init__(self, *, live: RoutingConfig, draft: RoutingConfig) -> None:
        self._live = live
        self._draft = draft
        self._live_loads = SimulatedLoads(live)
        self._draft_loads = SimulatedLoads(draft)
        self._tally = Tally(("live", "draft"))
        self._replayed = 0
        self._owner_changes = 0
        self._examples: list[dict[str, Any]] = []

    def feed(self, changes: Iterable[DecidedChange]) -> None:
        """Replay `changes` (after every change fed before: time order) through both routings."""
        for item in changes:
            at = item.decided_at
            live = outcome_of(item.change, config=self._live, loads=self._live_loads, at=at)
            draft = outcome_of(item.change, config=self._draft, loads=self._draft_loads, at=at)
            self._tally.add("live", live)
            self._tally.add("draft", draft)
            self._replayed += 1
            if live.target != draft.target:
                self._owner_changes += 1
                if len(self._examples) < EXAMPLES:
                    self._examples.append(
                        {
                            "lead_id": item.change.lead_id,
                            "email": item.change.profile.email,
                            "decided_at": at.isoformat(),
                            "live": live.view(),
                            "draft": draft.view(),
                        }
                    )

    def result(self) -> dict[str, Any]:
        """What the replay found so far: `replayed` changes; per team, rep and queue the leads
        under `live` and `draft`, and `not_to_sales`; `owner_changes`, the leads that get another
        owner, and the first `EXAMPLES` of them (`changes`, in decision order)."""
        return {
            "replayed": self._replayed,
            **self._tally.rows(),
            "owner_changes": self._owner_changes,
            "changes": list(self._examples),
        }
