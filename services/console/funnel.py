"""The funnel's aggregates, kept incrementally: what one lead adds to them, and what the pages
read back. Pure: no I/O, no clock.

A lead adds to four counters (`Share`), each keyed by the lead's dimensions (`Dimensions`: its
first touch, country and grade, as they are *now*) and, for the cohort counters, by the day it
entered the funnel:
- `now`: one, at the stage the lead is in;
- `reached`: one per stage it has reached (entered, or passed: a lead sales accepted from
  `lead` skipped mql, a visitor who identified engaged went from anonymous to lead, and both
  count as having passed the stages before);
- `durations`: per stage it has left, the time of its first stay there (`histograms` bucket of
  seconds): the median and p90 time in a stage are over the leads that left it;
- `flows`: per move, one in for the stage entered and one out for the stage exited, on the day
  of the move.
When a message changes a lead, the store adds `share_of(after) - share_of(before)`: a lead
whose grade changes moves, with its whole history, to its new grade's counters; a message
applied twice changes no record and so no counter. The funnel starts at `known` (the console
learns of a lead at its first stage change; anonymous visitors are not counted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from services.console.histograms import bucket_of, percentile
from services.console.lead_record import LeadRecord
from shared.contracts import FORWARD_ORDER, Stage

FUNNEL_STAGES: tuple[Stage, ...] = (
    *(stage for stage in FORWARD_ORDER if stage is not Stage.ANONYMOUS),
    Stage.RECYCLED,
    Stage.DISQUALIFIED,
)
"""The stages the funnel shows: the forward path from `known`, then the two ways out."""
FORWARD_STAGES: tuple[Stage, ...] = tuple(s for s in FORWARD_ORDER if s is not Stage.ANONYMOUS)

UNKNOWN = ""
"""The stored value of a dimension the lead does not have (shown as "(none)")."""


@dataclass(frozen=True, order=True)
class Dimensions:
    """What the funnel can be filtered by, besides the period: the lead's first touch (source,
    import list, campaign), its country and its fit grade."""

    source: str = UNKNOWN
    import_list: str = UNKNOWN
    campaign: str = UNKNOWN
    country: str = UNKNOWN
    grade: str = UNKNOWN


CohortKey = tuple[date, Dimensions, Stage]
DurationKey = tuple[date, Dimensions, Stage, int]
FlowKey = tuple[date, Dimensions, Stage]


@dataclass
class Share:
    """Counters a lead (or the difference of two states of it) adds, by key; a count may be
    negative in a difference."""

    now: dict[CohortKey, int] = field(default_factory=dict)
    reached: dict[CohortKey, int] = field(default_factory=dict)
    durations: dict[DurationKey, int] = field(default_factory=dict)
    entered: dict[FlowKey, int] = field(default_factory=dict)
    exited: dict[FlowKey, int] = field(default_factory=dict)

    def add(self, other: Share, *, sign: int = 1) -> None:
        for mine, theirs in self._pairs(other):
            for key, count in theirs.items():
                total = mine.get(key, 0) + sign * count
                if total:
                    mine[key] = total
                else:
                    mine.pop(key, None)

    def is_empty(self) -> bool:
        return not (self.now or self.reached or self.durations or self.entered or self.exited)

    def _pairs(self, other: Share) -> Iterable[tuple[dict, dict]]:  # type: ignore[type-arg]
        return (
            (self.now, other.now),
            (self.reached, other.reached),
            (self.durations, other.durations),
            (self.entered, other.entered),
            (self.exited, other.exited),
        )


def dimensions_of(record: LeadRecord) -> Dimensions:
    return Dimensions(
        source=record.source or UNKNOWN,
        import_list=record.import_list or UNKNOWN,
        campaign=record.campaign or UNKNOWN,
        country=record.country or UNKNOWN,
        grade=record.grade or UNKNOWN,
    )


def share_of(record: LeadRecord | None) -> Share:
    """What `record` adds to the funnel's counters (nothing for None: a lead not yet seen)."""
    share = Share()
    if record is None:
        return share
    dims = dimensions_of(record)
    cohort = record.created_at.date()
    share.now[(cohort, dims, record.stage)] = 1
    for stage in reached_stages(record):
        share.reached[(cohort, dims, stage)] = 1
    for stage, seconds in first_stays(record).items():
        stay = (cohort, dims, stage, bucket_of(seconds))
        share.durations[stay] = share.durations.get(stay, 0) + 1
    for move in record.moves:
        day = move.at.date()
        if move.from_stage is not Stage.ANONYMOUS:
            out = (day, dims, move.from_stage)
            share.exited[out] = share.exited.get(out, 0) + 1
        if move.to_stage is not Stage.ANONYMOUS:  # unmerged back to a visitor: no flow
            into = (day, dims, move.to_stage)
            share.entered[into] = share.entered.get(into, 0) + 1
    return share


def change_of(before: LeadRecord | None, after: LeadRecord | None) -> Share:
    """What the counters must add when a lead goes from `before` to `after`."""
    change = share_of(after)
    change.add(share_of(before), sign=-1)
    return change


def reached_stages(record: LeadRecord) -> set[Stage]:
    """The funnel stages the lead has been in or passed through (see the module doc)."""
    reached: set[Stage] = {record.stage}
    for move in record.moves:
        reached.update((move.from_stage, move.to_stage, *move.skipped))
    # A marketing jump (an engaged visitor who identifies: anonymous -> lead, or straight to
    # mql) passes the forward stages before it without naming them: every forward stage up to
    # the furthest one reached is reached (conversion never exceeds 100%).
    furthest = max(
        (FORWARD_STAGES.index(stage) for stage in reached if stage in FORWARD_STAGES), default=-1
    )
    reached.update(FORWARD_STAGES[: furthest + 1])
    reached.discard(Stage.ANONYMOUS)
    return reached


def first_stays(record: LeadRecord) -> dict[Stage, float]:
    """Seconds of the lead's first stay in each stage it has left since: from its first move
    into the stage to the next move out of it. The stage its first move left has no known
    entry (the console learns of a lead at that move): no stay is counted for it."""
    stays: dict[Stage, float] = {}
    entered: dict[Stage, datetime] = {}
    for move in record.moves:
        since = entered.get(move.from_stage)
        if since is not None and move.from_stage not in stays:
            stays[move.from_stage] = max((move.at - since).total_seconds(), 0.0)
        entered.setdefault(move.to_stage, move.at)
    stays.pop(Stage.ANONYMOUS, None)
    return stays


# --- reading back -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageRow:
    """One stage of a cohort's funnel, as the page and the CSV show it."""

    stage: Stage
    now: int
    reached: int
    share: float | None  # of the cohort's leads
    conversion: float | None  # from the previous forward stage
    median_s: float | None
    p90_s: float | None
    timed: int  # leads whose time in the stage is known (they left it)


@dataclass(frozen=True)
class Funnel:
    leads: int
    stages: tuple[StageRow, ...]


def funnel_of(
    *,
    now: Mapping[Stage, int],
    reached: Mapping[Stage, int],
    durations: Mapping[Stage, Mapping[int, int]],
) -> Funnel:
    """A cohort's funnel from its summed counters. The cohort's size is the sum of `now` (every
    lead is in exactly one stage). Conversion is reached(stage) / reached(previous forward
    stage), along the forward path only."""
    leads = sum(now.values())
    rows = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        count = reached.get(stage, 0)
        forward = stage in FORWARD_STAGES
        histogram = durations.get(stage, {})
        rows.append(
            StageRow(
                stage=stage,
                now=now.get(stage, 0),
                reached=count,
                share=count / leads if leads else None,
                conversion=(count / previous if previous else None) if forward else None,
                median_s=percentile(histogram, 0.5),
                p90_s=percentile(histogram, 0.9),
                timed=sum(histogram.values()),
            )
        )
        if forward:
            previous = count
    return Funnel(leads=leads, stages=tuple(rows))


@dataclass(frozen=True)
class WeekFlow:
    week: date  # its Monday
    stage: Stage
    entered: int
    exited: int

    @property
    def balance(self) -> int:
        return self.entered - self.exited


def weekly_flows(rows: Iterable[tuple[date, Stage, int, int]]) -> list[WeekFlow]:
    """Daily (day, stage, entered, exited) rows summed by week (Monday first), in week order then
    the funnel's stage order."""
    weeks: dict[tuple[date, Stage], list[int]] = {}
    for day, stage, entered, exited in rows:
        key = (day - timedelta(days=day.weekday()), stage)
        sums = weeks.setdefault(key, [0, 0])
        sums[0] += entered
        sums[1] += exited
    order = {stage: i for i, stage in enumerate(FUNNEL_STAGES)}
    return [
        WeekFlow(week=week, stage=stage, entered=sums[0], exited=sums[1])
        for (week, stage), sums in sorted(
            weeks.items(), key=lambda item: (item[0][0], order.get(item[0][1], 99))
        )
    ]
