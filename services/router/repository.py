"""router's tables (schema `router`): decisions (with their SLA timers, the routing version
that made them and the stage change they answered), suppressions, SLA breaches and the reps'
daily loads; and the reads of simulations and load previews. The routing versions and the
simulations' own rows are `shared.config_versions`' and `shared.simulations`' (same schema).

Every function takes the unit of work's session and runs in its transaction, with literal SQL
through `shared.db` (its module docstring states the convention). A consumer batch sends one
statement per step, rows as arrays or one JSON document, and none with nothing to do.

How a batch starts is written once, in the database (migration 0004), because one of its forms
must run several statements in one round trip: `router.start_transitions` (which transitions
are replays; the open decisions of the other transitions' leads closed),
`router.lock_teams_and_read_loads` (the team locks, then the reps' loads read after them) and
`router.start_batch` (both, in one call). The functions below call them; none repeats their SQL.

A new decision is written as a row of `router.decisions` itself (`NewDecision.row()` keys are
its columns, read with `jsonb_populate_recordset(NULL::router.decisions, ...)`): the table is
the one place its columns are listed.

Lock order, the same everywhere so that two router instances never deadlock on each other:
lead locks (`lock_leads`, or `router.start_transitions` for a batch of stage changes alone: one
statement, in key order), then decision rows (`lock_decisions`, sorted by id), then team locks
(sorted by name). A lead lock is an advisory lock per lead id (migration 0006). Before it, work
on one lead was serialised only by row locks: those a batch's decided check takes when it
closes the lead's open decisions, and an SLA check's on its decision (team locks serialise a
team's assignments, not a lead). A row lock covers nothing for a lead without an open decision,
which is exactly a late message's case (the lead's first stage change, or a later one after
its decisions were closed), and an erasure that deleted the rows it found could not stop a
concurrent batch from writing new ones. A lead lock covers a lead whatever the router holds of
it, so an erasure (`erase_leads`, under the same locks) and a batch naming one of its leads
never interleave: the batch either commits first (and the erasure, whose statements come after
its locks, deletes what the batch wrote, reassignments and breaches of an SLA check included)
or waits for the erasure and then finds the lead erased (asked in a statement after the locks)
and drops its messages. The one exception is CRM feedback named by email alone (no lead id to
lock): it only closes decision rows (row locks) and never creates one, so an erasure waits for
it or leaves it nothing to close.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.assignment import RepLoad
from services.router.current_routes import CurrentRoute
from services.router.load_preview import CurrentOwner
from shared.contracts import LifecycleChanged, RoutingDecision, RoutingWithdrawal
from shared.db import execute, fetch, fetchrow, fetchval, json_document
from shared.privacy import ErasedLeads

SCHEMA = "router"
ERASED_LEADS = ErasedLeads(SCHEMA)
"""The leads the router erased (`router.erased_leads`, migration 0006)."""


class Skipped(set[str]):
    """The transitions a batch must not decide, as a set: those already decided (a replay) and,
    among them, `erased`: those of leads erased by the time the batch held their locks (late
    messages: dropped, and counted by the caller). `routes`: the current routes of the batch's
    leads, read after their locks (`router.routes` rows; a lead without one is not there)."""

    def __init__(
        self,
        transitions: Iterable[str] = (),
        *,
        erased: Iterable[str] = (),
        routes: Iterable[CurrentRoute] = (),
    ) -> None:
        self.erased = set(erased)
        self.routes = {route.lead_id: route for route in routes}
        super().__init__([*transitions, *self.erased])


# ---- lead locks and erasure --------------------------------------------------------------------


async def lock_leads(session: AsyncSession, lead_ids: Iterable[str]) -> set[str]:
    """Hold each lead's lock until the transaction ends (whether or not the router has a row
    for it: an advisory lock per id, in key order, in one statement); returns those of
    `lead_ids` that were erased, asked after the locks (`router.lock_leads`, migration 0006),
    so an erasure that committed while this waited is seen. Taking a lock the transaction
    already holds is a no-op. None given: nothing sent."""
    ids = sorted(set(lead_ids))
    if not ids:
        return set()
    rows = await fetch(
        session, "SELECT erased_lead FROM router.lock_leads($1::text[]) AS erased_lead", ids
    )
    return {row["erased_lead"] for row in rows}


@dataclass(frozen=True, slots=True)
class Erased:
    """What `erase_leads` did: rows deleted per table, and simulation results whose examples of
    the leads were taken out (`simulations`: rows changed, kept)."""

    decisions: int
    suppressions: int
    sla_breaches: int
    withdrawals: int
    routes: int
    simulations: int

    def deleted(self) -> dict[str, int]:
        return {
            "decisions": self.decisions,
            "suppressions": self.suppressions,
            "sla_breaches": self.sla_breaches,
            "withdrawals": self.withdrawals,
            "routes": self.routes,
        }


async def erase_leads(session: AsyncSession, lead_ids: Sequence[str]) -> Erased:
    """Delete everything the router keeps about these leads, in one statement: their decisions
    (the payload holds email, name and company; `change` the stage change with the profile),
    the changes not routed (`suppressions`, with the email), the SLA breaches, the withdrawals
    and the lead's current route and sequence (`routes`); and take the
    leads out of the examples that stored simulation results list (lead id and email). The reps'
    daily loads (`rep_loads`: counts per rep and day, naming no lead) are kept as they are, so
    past assignments per rep stay counted.

    The caller holds the leads' locks (`lock_leads`, in an earlier statement): this statement's
    snapshot is taken after them, so it sees every row a batch of the same leads committed
    while the erasure waited, and no batch can add one until the erasure commits. Each table is
    read by its lead index; a second call deletes nothing."""
    ids = sorted(set(lead_ids))
    row = await fetchrow(
        session,
        """
        WITH breaches AS (
            DELETE FROM router.sla_breaches WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), decisions AS (
            DELETE FROM router.decisions WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), suppressions AS (
            DELETE FROM router.suppressions WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), withdrawals AS (
            DELETE FROM router.withdrawals WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), routes AS (
            DELETE FROM router.routes WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), simulations AS (
            UPDATE router.simulations AS simulation
               SET result = jsonb_set(simulation.result, '{changes}', coalesce(
                   (SELECT jsonb_agg(listed.example ORDER BY listed.position)
                      FROM jsonb_array_elements(simulation.result -> 'changes')
                           WITH ORDINALITY AS listed(example, position)
                     WHERE NOT coalesce(listed.example ->> 'lead_id' = ANY($1::text[]), false)),
                   '[]'::jsonb))
             WHERE jsonb_typeof(simulation.result -> 'changes') = 'array'
               AND EXISTS (SELECT FROM jsonb_array_elements(simulation.result -> 'changes')
                                       AS listed(example)
                            WHERE listed.example ->> 'lead_id' = ANY($1::text[]))
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM decisions) AS decisions,
               (SELECT count(*) FROM suppressions) AS suppressions,
               (SELECT count(*) FROM breaches) AS sla_breaches,
               (SELECT count(*) FROM withdrawals) AS withdrawals,
               (SELECT count(*) FROM routes) AS routes,
               (SELECT count(*) FROM simulations) AS simulations
        """,
        ids,
    )
    assert row is not None  # aggregates answer one row
    return Erased(
        decisions=row["decisions"],
        suppressions=row["suppressions"],
        sla_breaches=row["sla_breaches"],
        withdrawals=row["withdrawals"],
        routes=row["routes"],
        simulations=row["simulations"],
    )


# ---- a batch's start ----------------------------------------------------------------------------


async def start_transitions(
    session: AsyncSession,
    transitions: Sequence[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
) -> Skipped:
    """Of the (transition_id, lead_id) pairs, the transitions that already have a first decision
    or a suppression (a replay must add nothing); for the leads of every other transition, the
    open decisions are closed with `reason` (a new stage supersedes the SLA of decisions made
    for an earlier one). One statement (`router.start_transitions`): the leads' locks first,
    then the lookup and the closing, which share a snapshot; the transitions of leads erased
    by then are skipped too (`Skipped.erased`)."""
    if not transitions:
        return Skipped()
    rows = await fetch(
        session,
        "SELECT transition_id, erased, lead_id, sequence, decision_id, route"
        " FROM router.start_transitions($1::text[], $2::text[], $3, $4)",
        [transition_id for transition_id, _ in transitions],
        [lead_id for _, lead_id in transitions],
        at,
        reason,
    )
    return _skipped(rows)


def _skipped(rows: Iterable[Mapping[str, Any]]) -> Skipped:
    """The `Skipped` of `router.start_transitions` rows: rows with a transition name one to
    skip, rows with a lead a lead's `router.routes` row (migration 0008); others: neither."""
    rows = list(rows)
    started = [row for row in rows if row["transition_id"] is not None]
    return Skipped(
        (row["transition_id"] for row in started if not row["erased"]),
        erased=(row["transition_id"] for row in started if row["erased"]),
        routes=(_current_route(row) for row in rows if row["lead_id"] is not None),
    )


def _current_route(row: Mapping[str, Any]) -> CurrentRoute:
    return CurrentRoute(
        lead_id=row["lead_id"],
        sequence=row["sequence"],
        decision_id=row["decision_id"],
        route=row["route"],
    )


async def read_routes(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, CurrentRoute]:
    """The current routes of leads whose locks the caller holds (`lock_leads`), for the paths
    that start without `start_transitions` (SLA checks, nurture releases). One statement."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        "SELECT lead_id, sequence, decision_id, route FROM router.routes"
        " WHERE lead_id = ANY($1::text[])",
        ids,
    )
    return {row["lead_id"]: _current_route(row) for row in rows}


async def lock_teams_and_read_loads(
    session: AsyncSession, *, teams: Iterable[str], days: Mapping[str, date]
) -> dict[str, RepLoad]:
    """Hold each team's lock until the transaction ends, then read each rep's assignments on
    the given (local) day; reps without any are left out. Assignments in a team are so
    serialised across router instances that a rep's daily count (and cap) is never read
    stale: the loads are read with a snapshot taken after the locks. One statement
    (`router.lock_teams_and_read_loads`); no teams, none sent."""
    keys = _team_keys(teams)
    if not keys:
        return {}
    rep_ids = sorted(days)
    rows = await fetch(
        session,
        "SELECT rep_id, assigned, last_assigned_at"
        " FROM router.lock_teams_and_read_loads($1::text[], $2::text[], $3::date[])",
        keys,
        rep_ids,
        [days[rep_id] for rep_id in rep_ids],
    )
    return {row["rep_id"]: _load(row) for row in rows}


async def start_batch(
    session: AsyncSession,
    transitions: Sequence[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
    teams: Iterable[str],
    days: Mapping[str, date],
) -> tuple[Skipped, dict[str, RepLoad]]:
    """`start_transitions`, then `lock_teams_and_read_loads`, in one round trip (the function
    `router.start_batch`): the same statements in the same order, each with its own snapshot.
    For a batch with no SLA check (whose decision rows must be locked between the two).
    Returns (transitions skipped: already decided or of erased leads, loads by rep)."""
    rep_ids = sorted(days)
    rows = await fetch(
        session,
        "SELECT transition_id, rep_id, assigned, last_assigned_at, erased, lead_id, sequence,"
        " decision_id, route FROM router.start_batch($1::text[], $2::text[], $3, $4, $5::text[], $6::text[],"
        " $7::date[])",
        [transition_id for transition_id, _ in transitions],
        [lead_id for _, lead_id in transitions],
        at,
        reason,
        _team_keys(teams),
        rep_ids,
        [days[rep_id] for rep_id in rep_ids],
    )
    loads = {row["rep_id"]: _load(row) for row in rows if row["rep_id"] is not None}
    return _skipped(rows), loads


def _team_keys(teams: Iterable[str]) -> list[str]:
    """The teams' advisory lock keys, in the one lock order (by name)."""
    return [f"leadflow.router.team:{team}" for team in sorted(set(teams))]


def _load(row: Mapping[str, Any]) -> RepLoad:
    return RepLoad(assigned_today=row["assigned"], last_assigned_at=row["last_assigned_at"])


# ---- what a batch decided ----------------------------------------------------------------------


async def record_first_decisions(
    session: AsyncSession,
    transitions: Sequence[tuple[str, str]],
    *,
    decisions: Sequence[NewDecision],
    suppressions: Sequence[Suppression],
    at: datetime,
    reason: str,
) -> Skipped:
    """`start_transitions` and `record_batch` in one statement, for a batch whose decisions
    depend on nothing stored (nurture decisions and suppressions: no loads to read first).
    `transitions` are the batch's (transition_id, lead_id) in message order, each once; the
    rows given are written only for the transitions not skipped (already decided, or of a lead
    erased by the time the statement held its lock), which are returned (the caller drops
    their rows from what it emits). A decision whose lead changes stage again
    later in the batch (by a transition not already decided) is closed at birth with `reason`,
    whatever the row's own closing columns say, and its timer (a nurture decision's release,
    `next_check_at`) is dropped; the others keep theirs. Also returns the leads' current routes
    (`Skipped.routes`), read after the locks: what this batch withdraws is written next."""
    if not transitions:
        return Skipped()
    rows = await fetch(
        session,
        """
        WITH decided AS (
            SELECT transition_id, erased, lead_id, sequence, decision_id, route
              FROM router.start_transitions($1::text[], $2::text[], $3, $4)
        ), fresh AS (
            SELECT batch.transition_id, batch.lead_id, batch.position
              FROM unnest($1::text[], $2::text[]) WITH ORDINALITY
                   AS batch(transition_id, lead_id, position)
             WHERE batch.transition_id NOT IN (SELECT transition_id FROM decided
                                                 WHERE transition_id IS NOT NULL)
        ), decisions AS (
            INSERT INTO router.decisions
            SELECT born.*
              FROM jsonb_populate_recordset(NULL::router.decisions, $5::jsonb) AS sent
             CROSS JOIN LATERAL (
                   SELECT EXISTS (
                          SELECT FROM fresh AS this
                            JOIN fresh AS later_change
                              ON later_change.lead_id = this.lead_id
                             AND later_change.position > this.position
                           WHERE this.transition_id = sent.transition_id)
                   ) AS closing(at_birth)
             CROSS JOIN LATERAL jsonb_populate_record(sent, jsonb_build_object(
                   'next_check_at', CASE WHEN NOT closing.at_birth THEN sent.next_check_at END,
                   'closed_at', CASE WHEN closing.at_birth THEN sent.decided_at END,
                   'closed_reason', CASE WHEN closing.at_birth THEN $4::text END)) AS born
             WHERE sent.transition_id IN (SELECT transition_id FROM fresh)
        ), suppressions AS (
            INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
            SELECT transition_id, lead_id, email, stage, reason
              FROM jsonb_populate_recordset(NULL::router.suppressions, $6::jsonb)
             WHERE transition_id IN (SELECT transition_id FROM fresh)
        )
        SELECT transition_id, erased, lead_id, sequence, decision_id, route FROM decided
        """,
        [transition_id for transition_id, _ in transitions],
        [lead_id for _, lead_id in transitions],
        at,
        reason,
        json_document([row.row() for row in decisions]),
        json_document(suppressions),  # dataclasses: objects keyed by column name
    )
    return _skipped(rows)


async def record_batch(
    session: AsyncSession,
    *,
    decisions: Sequence[NewDecision],
    suppressions: Sequence[Suppression],
    assignments: Iterable[tuple[str, date]],
    at: datetime,
    checked: Sequence[CheckedDecision] = (),
    withdrawals: Sequence[RoutingWithdrawal] = (),
    routes: Sequence[CurrentRoute] = (),
) -> None:
    """Write what a batch decided in one statement (nothing to write: none sent): its
    decisions, its suppressions, one assignment counted per (rep, local day) pair given, and
    what its SLA checks and releases did to the decisions they checked (`checked`: closed,
    sent, or looked at again later; those rows are locked by `lock_decisions`, and none is one
    of `decisions`); the decisions it withdrew and the leads' new `router.routes` rows
    (`current_routes.sequenced`), under the leads' locks.

    Rows travel as one JSON document per table, read with `jsonb_populate_recordset` /
    `jsonb_to_recordset` (a decision's payload goes in as the JSON object it is): one parameter
    each instead of one array per column, which asyncpg encodes element by element with
    abstract-class checks in Python (measured: most of this statement's client CPU)."""
    counts = Counter(assignments)
    if not (decisions or suppressions or counts or checked or withdrawals or routes):
        return
    await execute(
        session,
        """
        WITH decisions AS (
            INSERT INTO router.decisions
            SELECT * FROM jsonb_populate_recordset(NULL::router.decisions, $1::jsonb)
        ), suppressions AS (
            INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
            SELECT transition_id, lead_id, email, stage, reason
              FROM jsonb_populate_recordset(NULL::router.suppressions, $2::jsonb)
        ), checked AS (
            UPDATE router.decisions AS decision
               SET next_check_at = checked_decision.next_check_at,
                   closed_at = checked_decision.closed_at,
                   closed_reason = checked_decision.closed_reason,
                   sequence = coalesce(checked_decision.sequence, decision.sequence),
                   released_at = coalesce(checked_decision.released_at, decision.released_at),
                   payload = coalesce(checked_decision.payload, decision.payload)
              FROM jsonb_to_recordset($5::jsonb)
                   AS checked_decision(decision_id text, next_check_at timestamptz,
                                       closed_at timestamptz, closed_reason text,
                                       sequence bigint, released_at timestamptz, payload jsonb)
             WHERE decision.decision_id = checked_decision.decision_id
        ), withdrawals AS (
            INSERT INTO router.withdrawals (decision_id, lead_id, route, cause, reason,
                                            replaced_by, sequence, withdrawn_at)
            SELECT decision_id, lead_id, route, cause, reason, replaced_by, sequence, withdrawn_at
              FROM jsonb_populate_recordset(NULL::router.withdrawals, $6::jsonb)
        ), routes AS (
            INSERT INTO router.routes (lead_id, sequence, decision_id, route, changed_at)
            SELECT lead_id, sequence, decision_id, route, changed_at
              FROM jsonb_populate_recordset(NULL::router.routes, $7::jsonb)
            ON CONFLICT (lead_id) DO UPDATE
               SET sequence = EXCLUDED.sequence, decision_id = EXCLUDED.decision_id,
                   route = EXCLUDED.route, changed_at = EXCLUDED.changed_at
        )
        INSERT INTO router.rep_loads (rep_id, day, assigned, last_assigned_at)
        SELECT rep_id, day, assigned, $4::timestamptz
          FROM jsonb_to_recordset($3::jsonb) AS counted(rep_id text, day date, assigned integer)
        ON CONFLICT (rep_id, day) DO UPDATE
           SET assigned = router.rep_loads.assigned + EXCLUDED.assigned,
               last_assigned_at = EXCLUDED.last_assigned_at
        """,
        json_document([row.row() for row in decisions]),
        json_document(suppressions),  # dataclasses: objects keyed by column name
        json_document(
            [
                {"rep_id": rep_id, "day": day, "assigned": assigned}
                for (rep_id, day), assigned in sorted(counts.items())
            ]
        ),
        at,
        json_document(checked),
        json_document([w.model_dump(mode="json") for w in withdrawals]),
        json_document([route.row(at=at) for route in routes]),
    )


@dataclass(frozen=True)
class NewDecision:
    decision: RoutingDecision
    transition_id: str
    teams: tuple[str, ...] = ()
    closed_reason: str | None = None  # set: the decision is closed at birth (a later change)
    change: LifecycleChanged | None = None  # what a first decision answered (None: an SLA check)
    release_at: datetime | None = None  # a nurture decision: sent then if its lead settled

    def row(self) -> dict[str, Any]:
        """The `router.decisions` row, keyed by column (every column: one left out would be
        written NULL); the payload is the decision's JSON and `change` the stage change's, both
        embedded as they are."""
        decision = self.decision
        closed = self.closed_reason is not None
        change = self.change
        return {
            "decision_id": decision.decision_id,
            "transition_id": self.transition_id,
            "lead_id": decision.lead_id,
            "route": decision.route,
            "owner_id": decision.owner.id if decision.owner else None,
            "track": decision.track,
            "queue": decision.queue,
            "strategy": decision.strategy,
            "email": decision.email,
            "teams": self.teams,
            "supersedes": decision.supersedes,
            "decided_at": decision.decided_at,
            "sla_due_at": decision.sla_due_at,
            # an open timer: the SLA's, or when a settling nurture decision may be sent
            "next_check_at": None if closed else (decision.sla_due_at or self.release_at),
            "closed_at": decision.decided_at if closed else None,
            "closed_reason": self.closed_reason,
            "payload": orjson.Fragment(decision.model_dump_json(by_alias=True)),
            "routing_version": decision.routing_version,
            "change": orjson.Fragment(change.model_dump_json(by_alias=True)) if change else None,
            "scrubbed_at": None,  # its personal parts are there until housekeeping scrubs them
            "sequence": decision.sequence,  # None: not sent (yet)
            "released_at": decision.released_at,
        }


@dataclass(frozen=True, slots=True)
class Suppression:
    """A `router.suppressions` row (its fields are the columns; `recorded_at` is the
    database's)."""

    transition_id: str
    lead_id: str
    email: str | None
    stage: str
    reason: str


@dataclass(frozen=True)
class OpenDecision:
    """A decision row as a timer's check needs it (read under its row lock); `sent`: it went
    out (a nurture decision still settling has not)."""

    decision_id: str
    transition_id: str
    lead_id: str
    route: str
    strategy: str | None
    teams: tuple[str, ...]
    sla_due_at: datetime | None
    closed: bool
    sent: bool
    decision: RoutingDecision


@dataclass(frozen=True, slots=True)
class CheckedDecision:
    """What a timer's check did to an open decision: closed it (`closed_at`, `closed_reason`;
    its timer stops), or set when it is looked at again (`next_check_at`; None: never); a
    nurture decision released is stored as sent (`sequence`, `released_at`, `payload`: the
    decision as sent; None: unchanged)."""

    decision_id: str
    next_check_at: datetime | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None
    sequence: int | None = None
    released_at: datetime | None = None
    payload: Any = None


# ---- SLA checks --------------------------------------------------------------------------------


async def lock_decisions(
    session: AsyncSession, decision_ids: Iterable[str]
) -> dict[str, OpenDecision]:
    """Row-lock the decisions (in id order) for the rest of the transaction."""
    ids = sorted(set(decision_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        """
        SELECT decision_id, transition_id, lead_id, route, strategy, teams, sla_due_at,
               closed_at IS NOT NULL AS closed, sequence IS NOT NULL AS sent, payload
          FROM router.decisions
         WHERE decision_id = ANY($1::text[])
         ORDER BY decision_id
           FOR UPDATE
        """,
        ids,
    )
    return {
        row["decision_id"]: OpenDecision(
            decision_id=row["decision_id"],
            transition_id=row["transition_id"],
            lead_id=row["lead_id"],
            route=row["route"],
            strategy=row["strategy"],
            teams=tuple(row["teams"] or ()),
            sla_due_at=row["sla_due_at"],
            closed=row["closed"],
            sent=row["sent"],
            decision=RoutingDecision.model_validate(row["payload"]),
        )
        for row in rows
    }


async def get_transition_owners(
    session: AsyncSession, transition_ids: Iterable[str]
) -> dict[str, tuple[set[str], int]]:
    """For each transition: who already had its lead, and how many decisions it has had (a
    transition without decisions is left out). One statement, an index probe per transition."""
    ids = sorted(set(transition_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        """
        SELECT decision.transition_id, decision.owner_id
          FROM unnest($1::text[]) AS wanted(transition_id)
         CROSS JOIN LATERAL (SELECT made.transition_id, made.owner_id
                               FROM router.decisions AS made
                              WHERE made.transition_id = wanted.transition_id
                             OFFSET 0) AS decision
        """,
        ids,
    )
    owners: dict[str, tuple[set[str], int]] = {}
    for row in rows:
        had, count = owners.get(row["transition_id"], (set(), 0))
        if row["owner_id"]:
            had.add(row["owner_id"])
        owners[row["transition_id"]] = (had, count + 1)
    return owners


async def record_breaches(
    session: AsyncSession, decisions: Sequence[OpenDecision], *, at: datetime
) -> int:
    """Record that each decision's SLA passed unaccepted (one statement); returns how many were
    not recorded before (a decision checked again after a crash is recorded once)."""
    if not decisions:
        return 0
    recorded = await fetchval(
        session,
        """
        WITH recorded AS (
            INSERT INTO router.sla_breaches (decision_id, lead_id, owner_id, queue, due_at,
                                             breached_at)
            SELECT decision_id, lead_id, owner_id, queue, due_at, $2
              FROM jsonb_to_recordset($1::jsonb)
                   AS breach(decision_id text, lead_id text, owner_id text, queue text,
                             due_at timestamptz)
            ON CONFLICT (decision_id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM recorded
        """,
        json_document(
            [
                {
                    "decision_id": breached.decision_id,
                    "lead_id": breached.lead_id,
                    "owner_id": breached.decision.owner.id if breached.decision.owner else None,
                    "queue": breached.decision.queue,
                    "due_at": breached.sla_due_at,
                }
                for breached in decisions
            ]
        ),
        at,
    )
    return int(recorded)


# ---- CRM feedback ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Feedback:
    """A CRM outcome that closes a lead's open decisions (by lead id and/or email)."""

    lead_id: str | None
    email: str | None
    reason: str
    at: datetime  # when sales acted: compared with each closed decision's SLA


async def close_on_feedback(
    session: AsyncSession, feedback: Sequence[Feedback], *, at: datetime
) -> list[tuple[datetime | None, datetime]]:
    """Close the open decisions of each feedback's lead (its lead id, or its email, lower
    case); a decision that several feedback items match is closed by the first, with its
    reason. Returns (sla_due_at, feedback at) of each decision closed, so the caller can tell
    met from missed SLAs. One statement for the batch."""
    if not feedback:
        return []
    rows = await fetch(
        session,
        """
        WITH feedback AS (
            SELECT *
              FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                   AS feedback(position, lead_id, email, reason, acted_at)
        ), first_match AS (
            SELECT DISTINCT ON (decision.decision_id)
                   decision.decision_id, feedback.reason, feedback.acted_at
              FROM feedback
              JOIN router.decisions AS decision
                ON decision.closed_at IS NULL
               AND (decision.lead_id = feedback.lead_id OR decision.email = feedback.email)
             ORDER BY decision.decision_id, feedback.position
        )
        UPDATE router.decisions AS decision
           SET closed_at = $6, closed_reason = first_match.reason, next_check_at = NULL
          FROM first_match
         WHERE decision.decision_id = first_match.decision_id
        RETURNING decision.sla_due_at, first_match.acted_at
        """,
        list(range(len(feedback))),
        [item.lead_id for item in feedback],
        [item.email.lower() if item.email else None for item in feedback],
        [item.reason for item in feedback],
        [item.at for item in feedback],
        at,
    )
    return [(row["sla_due_at"], row["acted_at"]) for row in rows]


# ---- the SLA timer -----------------------------------------------------------------------------


async def claim_due_checks(
    session: AsyncSession, *, now: datetime, recheck_at: datetime, limit: int
) -> list[tuple[str, str, str]]:
    """(decision_id, lead_id, route) of open decisions whose timer is due (an sdr decision's
    SLA check, a settling nurture decision's release), pushed to `recheck_at`
    so that the next round (or another instance: SKIP LOCKED) does not claim them again
    before their check had a chance to run. Uses the partial index on next_check_at."""
    rows = await fetch(
        session,
        """
        UPDATE router.decisions AS decision
           SET next_check_at = $2
          FROM (SELECT decision_id FROM router.decisions
                 WHERE next_check_at <= $1
                 ORDER BY next_check_at
                 LIMIT $3
                   FOR UPDATE SKIP LOCKED) AS due
         WHERE decision.decision_id = due.decision_id
        RETURNING decision.decision_id, decision.lead_id, decision.route
        """,
        now,
        recheck_at,
        limit,
    )
    return [(row["decision_id"], row["lead_id"], row["route"]) for row in rows]


async def next_check_after(session: AsyncSession, now: datetime) -> datetime | None:
    """The earliest SLA check scheduled after `now` (None: no open timer). One probe of the
    partial index on next_check_at."""
    earliest: datetime | None = await fetchval(
        session, "SELECT min(next_check_at) FROM router.decisions WHERE next_check_at > $1", now
    )
    return earliest


# ---- what a simulation replays (stored first sdr decisions and their changes) ------------------


@dataclass(frozen=True, slots=True)
class ReplayWindow:
    """Which stored stage changes a simulation replays: those of the first sdr decisions after
    `after` (a keyset position, exclusive), `replayable` of them (`limited`: the period has
    more, older ones, left out); `without_change` first sdr decisions of the period stored none
    (made before the router kept changes)."""

    after: tuple[datetime, str]
    replayable: int
    limited: bool
    without_change: int


@dataclass(frozen=True, slots=True)
class StoredChange:
    """A first sdr decision's stage change, as stored (JSON: the caller parses it, in the worker
    thread that replays it), and when the router decided."""

    decision_id: str
    decided_at: datetime
    change: dict[str, Any]


async def find_replay_window(
    session: AsyncSession, *, since: datetime, until: datetime, at_most: int
) -> ReplayWindow:
    """The newest `at_most` first sdr decisions (not SLA reassignments) decided from `since` to
    `until` that stored their change: where they start, and how many; and how many of the
    period's first sdr decisions have no change. One statement, on the partial index of first
    sdr decisions by time."""
    row = await fetchrow(
        session,
        """
        WITH newest AS (
            SELECT decided_at, decision_id
              FROM router.decisions
             WHERE route = 'sdr' AND supersedes IS NULL AND change IS NOT NULL
               AND decided_at >= $1 AND decided_at <= $2
             ORDER BY decided_at DESC, decision_id DESC
             LIMIT $3 + 1
        ), bounds AS (
            SELECT count(*) AS found,
                   (array_agg(decided_at ORDER BY decided_at, decision_id))[1] AS first_at,
                   (array_agg(decision_id ORDER BY decided_at, decision_id))[1] AS first_id
              FROM newest
        )
        SELECT bounds.found, bounds.first_at, bounds.first_id,
               (SELECT count(*)
                  FROM router.decisions
                 WHERE route = 'sdr' AND supersedes IS NULL AND change IS NULL
                   AND decided_at >= $1 AND decided_at <= $2) AS without_change
          FROM bounds
        """,
        since,
        until,
        at_most,
    )
    assert row is not None  # an aggregate answers one row
    if row["found"] > at_most:
        # One more than wanted was read: the oldest of them is the exclusive start.
        return ReplayWindow(
            after=(row["first_at"], row["first_id"]),
            replayable=at_most,
            limited=True,
            without_change=row["without_change"],
        )
    # All of the period: start before its first instant (a decision id is never empty).
    return ReplayWindow(
        after=(since, ""),
        replayable=row["found"],
        limited=False,
        without_change=row["without_change"],
    )


async def read_decided_changes(
    session: AsyncSession, *, after: tuple[datetime, str], until: datetime, limit: int
) -> list[StoredChange]:
    """The next `limit` first sdr decisions with their change after the keyset position `after`
    (decided_at, decision_id), up to `until`, oldest first: a simulation reads the window
    chunk by chunk with the last one read as the next `after`."""
    after_at, after_id = after
    rows = await fetch(
        session,
        """
        SELECT decision_id, decided_at, change
          FROM router.decisions
         WHERE route = 'sdr' AND supersedes IS NULL AND change IS NOT NULL
           AND (decided_at, decision_id) > ($1, $2) AND decided_at <= $3
         ORDER BY decided_at, decision_id
         LIMIT $4
        """,
        after_at,
        after_id,
        until,
        limit,
    )
    return [
        StoredChange(
            decision_id=row["decision_id"], decided_at=row["decided_at"], change=row["change"]
        )
        for row in rows
    ]


# ---- what a load preview reads (leads' latest changes and open sdr owners) ---------------------


async def latest_changes_of_leads(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each lead's newest stored stage change (JSON), for the leads that have one. One
    statement, an index probe per lead."""
    if not lead_ids:
        return {}
    rows = await fetch(
        session,
        """
        SELECT wanted.lead_id, latest.change
          FROM unnest($1::text[]) AS wanted(lead_id)
         CROSS JOIN LATERAL (SELECT decision.change
                               FROM router.decisions AS decision
                              WHERE decision.lead_id = wanted.lead_id
                                AND decision.change IS NOT NULL
                              ORDER BY decision.decided_at DESC, decision.decision_id DESC
                              LIMIT 1) AS latest
        """,
        sorted(set(lead_ids)),
    )
    return {row["lead_id"]: row["change"] for row in rows}


async def open_sdr_owners_of_leads(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, CurrentOwner]:
    """Who has each lead now (`CurrentOwner`: its newest open sdr decision's owner or queue),
    for the leads with an open sdr decision. One statement, a probe of the open-decisions index
    per lead."""
    if not lead_ids:
        return {}
    rows = await fetch(
        session,
        """
        SELECT wanted.lead_id, latest.owner_id, latest.owner_name, latest.owner_team,
               latest.queue
          FROM unnest($1::text[]) AS wanted(lead_id)
         CROSS JOIN LATERAL (SELECT decision.owner_id,
                                    decision.payload -> 'owner' ->> 'name' AS owner_name,
                                    decision.payload -> 'owner' ->> 'team' AS owner_team,
                                    decision.queue
                               FROM router.decisions AS decision
                              WHERE decision.lead_id = wanted.lead_id
                                AND decision.closed_at IS NULL
                                AND decision.route = 'sdr'
                              ORDER BY decision.decided_at DESC, decision.decision_id DESC
                              LIMIT 1) AS latest
        """,
        sorted(set(lead_ids)),
    )
    return {
        row["lead_id"]: CurrentOwner(
            lead_id=row["lead_id"],
            owner_id=row["owner_id"],
            owner_name=row["owner_name"],
            team=row["owner_team"],
            queue=row["queue"],
        )
        for row in rows
    }


# ---- the lead's routing history (operators, CLI and HTTP) --------------------------------------


async def lead_history(session: AsyncSession, key: str) -> dict[str, Any] | None:
    """Decisions (with their SLA outcome), suppressions and breaches of a lead, by lead_id or
    email, oldest first; None if the router never saw it. A decision or suppression past its
    retention was scrubbed by housekeeping (`scrubbed_at`): it has no email, name, company or
    reasons (a suppression: its reason's kind only), and the lead is found by its id alone."""
    lead_id = await fetchval(
        session,
        """
        SELECT lead_id FROM router.decisions WHERE lead_id = $1 OR email = lower($1)
        UNION
        SELECT lead_id FROM router.suppressions WHERE lead_id = $1 OR email = lower($1)
        LIMIT 1
        """,
        key,
    )
    if lead_id is None:
        return None
    decisions = await fetch(
        session,
        """
        SELECT payload, closed_at, closed_reason, scrubbed_at FROM router.decisions
         WHERE lead_id = $1 ORDER BY decided_at, decision_id
        """,
        lead_id,
    )
    suppressions = await fetch(
        session,
        """
        SELECT transition_id, stage, reason, recorded_at, scrubbed_at FROM router.suppressions
         WHERE lead_id = $1 ORDER BY recorded_at
        """,
        lead_id,
    )
    breaches = await fetch(
        session,
        """
        SELECT decision_id, owner_id, queue, due_at, breached_at FROM router.sla_breaches
         WHERE lead_id = $1 ORDER BY breached_at
        """,
        lead_id,
    )
    return {
        "lead_id": lead_id,
        "decisions": [
            {
                **row["payload"],
                "closed_at": _iso(row["closed_at"]),
                "closed_reason": row["closed_reason"],
                "scrubbed_at": _iso(row["scrubbed_at"]),
            }
            for row in decisions
        ],
        "suppressions": [
            {
                "transition_id": row["transition_id"],
                "stage": row["stage"],
                "reason": row["reason"],
                "recorded_at": _iso(row["recorded_at"]),
                "scrubbed_at": _iso(row["scrubbed_at"]),
            }
            for row in suppressions
        ],
        "sla_breaches": [
            {
                "decision_id": row["decision_id"],
                "owner_id": row["owner_id"],
                "queue": row["queue"],
                "due_at": _iso(row["due_at"]),
                "breached_at": _iso(row["breached_at"]),
            }
            for row in breaches
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
