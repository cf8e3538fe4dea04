"""What the pages read: each query sums the incrementally kept counters (never raw history),
so it answers in about the same time with a thousand leads or a million (bench "console").

Filters are exact matches; a filter left empty (None) matches every value. Shaping the sums
into what a page shows is pure (`funnel.funnel_of`, `speed_report`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.console import repository
from services.console.funnel import Funnel, WeekFlow, funnel_of, weekly_flows
from services.console.histograms import percentile
from services.console.lead_record import LeadRecord
from services.console.speed import SLA_OUTCOMES, DecisionRow
from shared.contracts import Stage
from shared.db import fetch

DIMENSIONS = ("source", "import_list", "campaign", "country", "grade")


@dataclass(frozen=True)
class CohortFilter:
    """A cohort: leads that entered the funnel from `since` to `until` (days, inclusive), with
    the given first touch, country and grade (None: any)."""

    since: date
    until: date
    source: str | None = None
    import_list: str | None = None
    campaign: str | None = None
    country: str | None = None
    grade: str | None = None

    def dimension_args(self) -> list[str | None]:
        return [self.source, self.import_list, self.campaign, self.country, self.grade]

    @property
    def filtered(self) -> bool:
        return any(value is not None for value in self.dimension_args())


@dataclass(frozen=True)
class FunnelPage:
    cohort: CohortFilter
    funnel: Funnel
    all_time_now: dict[Stage, int]
    flows: list[WeekFlow]


async def funnel_page(session: AsyncSession, cohort: CohortFilter) -> FunnelPage:
    """A cohort's funnel, its flows per week and the leads in each stage now (every cohort).
    Unfiltered, from the counters per day (a year is a few thousand rows); filtered, from the
    counters per day and dimensions, narrowed by an index on the filters."""
    args = [cohort.since, cohort.until, *cohort.dimension_args()]
    # The dimensions, parameters $3 to $7 (after the period's $1 and $2): a filter that is set
    # is a plain equality (an index serves it in every plan, a generic one included: `($3 IS
    # NULL OR source = $3)` made PostgreSQL's generic plan read every row of the period, bench
    # "console", 2026-12-03); one left empty still names its parameter, always true.
    match = (
        (" AND source = $3" if cohort.source is not None else " AND $3::text IS NULL")
        + (" AND import_list = $4" if cohort.import_list is not None else " AND $4::text IS NULL")
        + (" AND campaign = $5" if cohort.campaign is not None else " AND $5::text IS NULL")
        + (" AND country = $6" if cohort.country is not None else " AND $6::text IS NULL")
        + (" AND grade = $7" if cohort.grade is not None else " AND $7::text IS NULL")
    )
    if cohort.filtered:
        counts = await fetch(
            session,
            "SELECT stage, sum(now)::bigint AS now, sum(reached)::bigint AS reached"
            " FROM console.funnel WHERE cohort_day BETWEEN $1 AND $2" + match + " GROUP BY stage",
            *args,
        )
        durations = await fetch(
            session,
            "SELECT stage, bucket, sum(leads)::bigint AS leads FROM console.stage_durations"
            " WHERE cohort_day BETWEEN $1 AND $2" + match + " GROUP BY stage, bucket",
            *args,
        )
        flows = await fetch(
            session,
            "SELECT day, stage, sum(entered)::bigint AS entered, sum(exited)::bigint AS exited"
            " FROM console.stage_flows WHERE day BETWEEN $1 AND $2"
            + match
            + " GROUP BY day, stage",
            *args,
        )
    else:
        counts = await fetch(
            session,
            "SELECT stage, sum(now)::bigint AS now, sum(reached)::bigint AS reached"
            " FROM console.funnel_days WHERE cohort_day BETWEEN $1 AND $2 GROUP BY stage",
            cohort.since,
            cohort.until,
        )
        durations = await fetch(
            session,
            "SELECT stage, bucket, sum(leads)::bigint AS leads FROM console.stage_duration_days"
            " WHERE cohort_day BETWEEN $1 AND $2 GROUP BY stage, bucket",
            cohort.since,
            cohort.until,
        )
        flows = await fetch(
            session,
            "SELECT day, stage, entered, exited FROM console.stage_flow_days"
            " WHERE day BETWEEN $1 AND $2",
            cohort.since,
            cohort.until,
        )
    everyone = await fetch(
        session,
        # every cohort: the period's parameters are there, unused, to share the match
        "SELECT stage, sum(leads)::bigint AS now FROM console.stage_now"
        " WHERE $1::date IS NOT NULL AND $2::date IS NOT NULL" + match + " GROUP BY stage",
        *args,
    )
    histograms: dict[Stage, dict[int, int]] = defaultdict(dict)
    for row in durations:
        histograms[Stage(row["stage"])][row["bucket"]] = row["leads"]
    return FunnelPage(
        cohort=cohort,
        funnel=funnel_of(
            now={Stage(row["stage"]): row["now"] for row in counts},
            reached={Stage(row["stage"]): row["reached"] for row in counts},
            durations=histograms,
        ),
        all_time_now={Stage(row["stage"]): row["now"] for row in everyone if row["now"]},
        flows=weekly_flows(
            (row["day"], Stage(row["stage"]), row["entered"], row["exited"]) for row in flows
        ),
    )


async def dimension_values(session: AsyncSession) -> dict[str, list[str]]:
    """The values each filter can take (what leads have had), for the filter's choices."""
    rows = await fetch(
        session, "SELECT dimension, value FROM console.dimension_values ORDER BY dimension, value"
    )
    values: dict[str, list[str]] = {dimension: [] for dimension in DIMENSIONS}
    for row in rows:
        values.setdefault(row["dimension"], []).append(row["value"])
    return values


# --- speed-to-lead ------------------------------------------------------------------------


@dataclass(frozen=True)
class Percentiles:
    leads: int
    p50: float | None
    p90: float | None
    p99: float | None


def percentiles_of(histogram: dict[int, int]) -> Percentiles:
    return Percentiles(
        leads=sum(histogram.values()),
        p50=percentile(histogram, 0.5),
        p90=percentile(histogram, 0.9),
        p99=percentile(histogram, 0.99),
    )


@dataclass(frozen=True)
class RepLine:
    team: str
    rep: str
    name: str
    decision: Percentiles
    acceptance: Percentiles
    sla: dict[str, int]


@dataclass(frozen=True)
class Waiting:
    queue: str
    leads: int
    oldest: datetime


@dataclass(frozen=True)
class SpeedPage:
    since: date
    until: date
    team: str | None
    by_day: list[tuple[date, Percentiles, Percentiles]]  # (day or week, decision, acceptance)
    by_rep: list[RepLine]
    waiting: list[Waiting]
    teams: list[str] = field(default_factory=list)
    per: str = "day"  # what each of `by_day` is: a day, or a week (its Monday)


DAILY_UP_TO_DAYS = 92
"""Speed-to-lead is shown per day for periods shorter than this, per week for longer ones."""


def whole_months(since: date, until: date) -> tuple[date, date]:
    """The whole months inside [since, until], as [first day, first day after): empty (first
    equals end) when the period holds none."""
    first = since if since.day == 1 else (since.replace(day=1) + timedelta(days=32)).replace(day=1)
    end = (until + timedelta(days=1)).replace(day=1)
    return (first, end) if first < end else (first, first)


async def speed_page(
    session: AsyncSession, *, since: date, until: date, team: str | None
) -> SpeedPage:
    # the team filter as a plain equality when set (see `funnel_page`)
    team_match = " AND team = $3" if team is not None else " AND $3::text IS NULL"
    # A long period is shown per week (its Monday): a year per day is 365 bars no one reads,
    # and ~44k rows to read back (bench "console", 2026-12-03).
    weekly = (until - since).days >= DAILY_UP_TO_DAYS
    period = "date_trunc('week', day)::date" if weekly else "day"
    if team is not None:
        per_day = await fetch(
            session,
            "SELECT " + period + " AS day, measure, bucket, sum(leads)::bigint AS leads"
            " FROM console.speed WHERE day BETWEEN $1 AND $2"
            + team_match
            + " GROUP BY 1, measure, bucket",
            since,
            until,
            team,
        )
    else:
        per_day = await fetch(
            session,
            "SELECT " + period + " AS day, measure, bucket, sum(leads)::bigint AS leads"
            " FROM console.speed_days WHERE day BETWEEN $1 AND $2 GROUP BY 1, measure, bucket",
            since,
            until,
        )
    days: dict[tuple[date, str], dict[int, int]] = defaultdict(dict)
    for row in per_day:
        days[(row["day"], row["measure"])][row["bucket"]] = row["leads"]
    # A rep's figures: whole months from the monthly counters, the days around them daily.
    first, end = whole_months(since, until)
    reps: dict[tuple[str, str, str], dict[int, int]] = defaultdict(dict)
    for row in await fetch(
        session,
        "SELECT team, rep, measure, bucket, sum(leads)::bigint AS leads FROM ("
        "  SELECT team, rep, measure, bucket, leads FROM console.speed_months"
        "   WHERE month >= $4 AND month < $5" + team_match + "  UNION ALL"
        "  SELECT team, rep, measure, bucket, leads FROM console.speed"
        # two index ranges (the days before the whole months, the days after), not a filter
        # over the whole period's rows
        "   WHERE (day >= $1 AND day < $4) OR (day >= $5 AND day <= $2)"
        + team_match
        + ") AS counted GROUP BY team, rep, measure, bucket",
        since,
        until,
        team,
        first,
        end,
    ):
        reps[(row["team"], row["rep"], row["measure"])][row["bucket"]] = row["leads"]
    sla_rows = await fetch(
        session,
        "SELECT team, rep, sum(met)::bigint AS met, sum(breached)::bigint AS breached,"
        " sum(reassigned)::bigint AS reassigned, sum(escalated)::bigint AS escalated"
        " FROM console.sla_outcomes WHERE day BETWEEN $1 AND $2"
        + team_match
        + " GROUP BY team, rep",
        since,
        until,
        team,
    )
    sla = {(row["team"], row["rep"]): {k: row[k] for k in SLA_OUTCOMES} for row in sla_rows}
    names = {
        row["rep"]: row["name"]
        for row in await fetch(session, "SELECT rep, name FROM console.reps")
    }
    pairs = sorted({(t, r) for t, r, _ in reps} | set(sla))
    waiting = await fetch(
        session,
        "SELECT rep, count(*) AS leads, min(decided_at) AS oldest FROM console.decisions"
        " WHERE queued AND closed_at IS NULL AND accepted_at IS NULL GROUP BY rep ORDER BY rep",
    )
    teams = await fetch(session, "SELECT DISTINCT team FROM console.reps ORDER BY team")
    return SpeedPage(
        since=since,
        until=until,
        team=team,
        by_day=[
            (
                day,
                percentiles_of(days.get((day, "decision"), {})),
                percentiles_of(days.get((day, "acceptance"), {})),
            )
            for day in sorted({day for day, _ in days})
        ],
        by_rep=[
            RepLine(
                team=t,
                rep=r,
                name=names.get(r, r),
                decision=percentiles_of(reps.get((t, r, "decision"), {})),
                acceptance=percentiles_of(reps.get((t, r, "acceptance"), {})),
                sla=sla.get((t, r), dict.fromkeys(SLA_OUTCOMES, 0)),
            )
            for t, r in pairs
        ],
        waiting=[
            Waiting(
                queue=row["rep"].removeprefix("queue:"), leads=row["leads"], oldest=row["oldest"]
            )
            for row in waiting
        ],
        teams=[row["team"] for row in teams if row["team"]],
        per="week" if weekly else "day",
    )


# --- leads --------------------------------------------------------------------------------

SEARCH_LIMIT = 50


async def search_leads(session: AsyncSession, text: str) -> list[LeadRecord]:
    """Leads whose id or email is `text`, then those whose id, email, name or company contains
    it (case-insensitive; trigram index), newest stage change first; at most `SEARCH_LIMIT`."""
    needle = " ".join(text.split()).lower()
    if not needle:
        return []
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return await repository.search_leads(
        session, lead_id=text.strip(), email=needle, pattern=pattern, limit=SEARCH_LIMIT
    )


@dataclass(frozen=True)
class LeadStory:
    """What the console itself holds of a lead; the lead page adds score's explanation."""

    record: LeadRecord
    stage_changes: list[dict[str, Any]]
    decisions: list[DecisionRow]
    feedback: list[dict[str, Any]]


async def lead_story(session: AsyncSession, key: str) -> LeadStory | None:
    """A lead by id or email, with its stage changes, decisions and CRM reports."""
    record = await repository.lead_by_id_or_email(session, key)
    if record is None:
        return None
    changes = await fetch(
        session,
        "SELECT transition_id, at, from_stage, to_stage, reason, by_sales, skipped, score"
        " FROM console.stage_changes WHERE lead_id = $1 ORDER BY at, transition_id",
        record.lead_id,
    )
    feedback = await fetch(
        session,
        "SELECT feedback_id, outcome, reason, owner_id, at FROM console.feedback"
        " WHERE lead_id = $1 ORDER BY at",
        record.lead_id,
    )
    return LeadStory(
        record=record,
        stage_changes=[dict(change) for change in changes],
        decisions=sorted(
            (await repository.load_decisions(session, [record.lead_id]))[record.lead_id].values(),
            key=lambda decision: decision.decided_at,
        ),
        feedback=[dict(report) for report in feedback],
    )


@dataclass(frozen=True)
class RepLoad:
    team: str
    rep: str
    name: str | None
    leads: int


async def sdr_load(session: AsyncSession, *, days: int) -> list[RepLoad]:
    """Each team's and rep's SDR leads of the last `days` days (first decisions, not SLA
    reassignments; a fallback queue is its own "rep"): the load a rules simulation's change is
    shown beside. Reads those days' SDR decisions by their index."""
    rows = await fetch(
        session,
        """
        SELECT team, rep, max(rep_name) AS name, count(*) AS leads
          FROM console.decisions
         WHERE route = 'sdr' AND supersedes IS NULL
           AND decided_at >= now() - make_interval(days => $1)
         GROUP BY team, rep
         ORDER BY team, rep
        """,
        days,
    )
    return [RepLoad(row["team"], row["rep"], row["name"], row["leads"]) for row in rows]
