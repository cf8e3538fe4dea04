"""router's tables (schema `router`): decisions (with their SLA timers), suppressions, SLA
breaches and the reps' daily loads. Every function runs in the caller's transaction.

The consumer's hot path (one batch) speaks asyncpg directly, inside the session's transaction
(`shared.db.driver_connection`): one statement per step and batch, rows as arrays or one JSON
document, and statements with nothing to do are not sent; a batch's first steps may share one
round trip (`start_batch`, a plpgsql function that runs them in order). The SLA timer and the history reads, which run
rarely, go through SQLAlchemy sessions.

Lock order, the same everywhere so that two router instances never deadlock on each other:
decision rows (`lock_decisions`, sorted by id), then team locks (`lock_teams`, sorted by name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.assignment import RepLoad
from shared.contracts import RoutingDecision
from shared.db import json_document

SCHEMA = "router"


# The transitions of `$1` (text[]) that already have a first decision or a suppression: a replay
# must add nothing. A LIMIT 1 lateral per transition keeps these primary-key probes: without table
# statistics (a young table) `= ANY(...) AND supersedes IS NULL` was planned as a scan of every
# first decision (~1 ms at 3,000 rows, growing with the table).
_DECIDED = """
    SELECT DISTINCT k.id AS transition_id
      FROM unnest($1::text[]) AS k(id)
     CROSS JOIN LATERAL (
           SELECT FROM router.decisions d
            WHERE d.transition_id = k.id AND d.supersedes IS NULL
           UNION ALL
           SELECT FROM router.suppressions s WHERE s.transition_id = k.id
           LIMIT 1) AS found
"""


async def start_transitions(
    db: asyncpg.Connection,
    transitions: Sequence[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
) -> set[str]:
    """Of the (transition_id, lead_id) pairs, the transitions that already have a first decision
    or a suppression (a replay must add nothing); for the leads of every other transition, the
    open decisions are closed with `reason` (a new stage supersedes the SLA of decisions made
    for an earlier one). One statement: the lookup and the closing share a snapshot. The leads
    to close go in as one array (`= ANY(ARRAY(...))`), so the open-by-lead index is probed per
    lead whatever the table's statistics say (a join here was planned as a scan of every open
    decision while the table was young)."""
    if not transitions:
        return set()
    rows = await db.fetch(
        f"""
        WITH batch AS (
            SELECT t, l FROM unnest($1::text[], $2::text[]) AS b(t, l)
        ), decided AS ({_DECIDED}
        ), closed AS (
            UPDATE router.decisions
               SET closed_at = $3, closed_reason = $4, next_check_at = NULL
             WHERE closed_at IS NULL
               AND lead_id = ANY(ARRAY(SELECT l FROM batch
                                        WHERE t NOT IN (SELECT transition_id FROM decided)))
        )
        SELECT transition_id FROM decided
        """,
        [t for t, _ in transitions],
        [lead for _, lead in transitions],
        at,
        reason,
    )
    return {row[0] for row in rows}


async def start_batch(
    db: asyncpg.Connection,
    transitions: Sequence[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
    teams: Iterable[str],
    days: Mapping[str, date],
) -> tuple[set[str], dict[str, RepLoad]]:
    """`start_transitions`, then `lock_teams`, then `get_rep_loads`, in one round trip (the
    function `router.start_batch`, migration 0003): the same statements in the same order, each
    with its own snapshot, so the loads are read after the locks as `get_rep_loads` requires.
    For a batch with no SLA check (whose decision rows must be locked between the first step
    and the team locks). Returns (transitions already decided, loads by rep)."""
    rep_ids = sorted(days)
    rows = await db.fetch(
        "SELECT * FROM router.start_batch($1::text[], $2::text[], $3, $4, $5::text[],"
        " $6::text[], $7::date[])",
        [t for t, _ in transitions],
        [lead for _, lead in transitions],
        at,
        reason,
        _team_keys(teams),
        rep_ids,
        [days[r] for r in rep_ids],
    )
    decided = {row[0] for row in rows if row[0] is not None}
    loads = {
        row[1]: RepLoad(assigned_today=row[2], last_assigned_at=row[3])
        for row in rows
        if row[1] is not None
    }
    return decided, loads


def _team_keys(teams: Iterable[str]) -> list[str]:
    """The teams' advisory lock keys, in the one lock order (by name)."""
    return [f"leadflow.router.team:{team}" for team in sorted(set(teams))]


async def record_first_decisions(
    db: asyncpg.Connection,
    transitions: Sequence[tuple[str, str]],
    *,
    decisions: Sequence[NewDecision],
    suppressions: Sequence[Suppression],
    at: datetime,
    reason: str,
) -> set[str]:
    """`start_transitions` and `record_batch` in one statement, for a batch whose decisions
    depend on nothing stored (nurture decisions and suppressions: no loads to read first).
    `transitions` are the batch's (transition_id, lead_id) in message order, each once; the
    rows given are written only for the transitions not already decided, which are returned
    (the caller drops their rows from what it emits). A decision whose lead changes stage again
    later in the batch (by a transition not already decided) is closed at birth with `reason`,
    whatever the row's own closing columns say; none of these has an SLA timer."""
    if not transitions:
        return set()
    rows = await db.fetch(
        f"""
        WITH batch AS (
            SELECT t, l, i FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS b(t, l, i)
        ), decided AS ({_DECIDED}
        ), fresh AS (
            SELECT t, l, i FROM batch WHERE t NOT IN (SELECT transition_id FROM decided)
        ), closed AS (
            UPDATE router.decisions
               SET closed_at = $3, closed_reason = $4, next_check_at = NULL
             WHERE closed_at IS NULL AND lead_id = ANY(ARRAY(SELECT l FROM fresh))
        ), written AS (
            SELECT n.*, EXISTS (SELECT 1 FROM fresh f JOIN fresh g ON g.l = f.l AND g.i > f.i
                                 WHERE f.t = n.t) AS later
              FROM jsonb_to_recordset($5::jsonb)
                   AS n(d text, t text, l text, r text, o text, tr text, q text, st text,
                        e text, tm jsonb, su text, da timestamptz, due timestamptz, p jsonb)
             WHERE n.t IN (SELECT t FROM fresh)
        ), decisions AS (
            INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, owner_id,
                track, queue, strategy, email, teams, supersedes, decided_at, sla_due_at,
                next_check_at, closed_at, closed_reason, payload)
            SELECT d, t, l, r, o, tr, q, st, e, ARRAY(SELECT jsonb_array_elements_text(tm)),
                   su, da, due, NULL, CASE WHEN later THEN da END,
                   CASE WHEN later THEN $4 END, p
              FROM written
        ), suppressions AS (
            INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
            SELECT t, l, e, s, r
              FROM jsonb_to_recordset($6::jsonb) AS n(t text, l text, e text, s text, r text)
             WHERE t IN (SELECT t FROM fresh)
        )
        SELECT transition_id FROM decided
        """,
        [t for t, _ in transitions],
        [lead for _, lead in transitions],
        at,
        reason,
        json_document([row.row() for row in decisions]),
        _suppressions_json(suppressions),
    )
    return {row[0] for row in rows}


async def lock_teams(db: asyncpg.Connection, teams: Iterable[str]) -> None:
    """Hold each team's lock until the transaction ends: assignments in a team are serialised
    across router instances, so a rep's daily count (and cap) is never read stale. One
    statement takes them one at a time in name order (unnest keeps the array's order; a
    consistent order cannot deadlock)."""
    keys = _team_keys(teams)
    if keys:
        await db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k",
            keys,
        )


async def get_rep_loads(db: asyncpg.Connection, days: Mapping[str, date]) -> dict[str, RepLoad]:
    """Each rep's assignments on the given (local) day; reps without any are left out. Read
    after `lock_teams` (its own statement, so its snapshot sees what the lock holders wrote)."""
    if not days:
        return {}
    rep_ids = sorted(days)
    rows = await db.fetch(
        """
        SELECT l.rep_id, l.assigned, l.last_assigned_at
          FROM router.rep_loads l
          JOIN unnest($1::text[], $2::date[]) AS d(rep_id, day)
            ON l.rep_id = d.rep_id AND l.day = d.day
        """,
        rep_ids,
        [days[r] for r in rep_ids],
    )
    return {row[0]: RepLoad(assigned_today=row[1], last_assigned_at=row[2]) for row in rows}


async def record_batch(
    db: asyncpg.Connection,
    *,
    decisions: Sequence[NewDecision],
    suppressions: Sequence[Suppression],
    assignments: Iterable[tuple[str, date]],
    at: datetime,
    checked: Sequence[CheckedDecision] = (),
) -> None:
    """Write what a batch decided in one statement (nothing to write: none sent): its
    decisions, its suppressions, one assignment counted per (rep, local day) pair given, and
    what its SLA checks did to the decisions they checked (`checked`: closed, or looked at
    again later; those rows are locked by `lock_decisions`, and none is one of `decisions`).

    Rows travel as one JSON document per table, read with `jsonb_to_recordset` (a decision's
    payload goes in as the JSON object it is): one parameter each instead of one array per
    column, which asyncpg encodes element by element with abstract-class checks in Python
    (measured: most of this statement's client CPU)."""
    counts = Counter(assignments)
    if not decisions and not suppressions and not counts and not checked:
        return
    await db.execute(
        """
        WITH decisions AS (
            INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, owner_id,
                track, queue, strategy, email, teams, supersedes, decided_at, sla_due_at,
                next_check_at, closed_at, closed_reason, payload)
            SELECT d, t, l, r, o, tr, q, st, e, ARRAY(SELECT jsonb_array_elements_text(tm)),
                   su, da, due, nc, ca, cr, p
              FROM jsonb_to_recordset($1::jsonb)
                   AS n(d text, t text, l text, r text, o text, tr text, q text, st text,
                        e text, tm jsonb, su text, da timestamptz, due timestamptz,
                        nc timestamptz, ca timestamptz, cr text, p jsonb)
        ), suppressions AS (
            INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
            SELECT t, l, e, s, r
              FROM jsonb_to_recordset($2::jsonb) AS n(t text, l text, e text, s text, r text)
        ), checked AS (
            UPDATE router.decisions d
               SET next_check_at = c.next_check_at, closed_at = c.closed_at,
                   closed_reason = c.closed_reason
              FROM jsonb_to_recordset($5::jsonb) AS c(decision_id text, next_check_at timestamptz,
                                                      closed_at timestamptz, closed_reason text)
             WHERE d.decision_id = c.decision_id
        )
        INSERT INTO router.rep_loads (rep_id, day, assigned, last_assigned_at)
        SELECT rep_id, day, n, $4::timestamptz
          FROM jsonb_to_recordset($3::jsonb) AS t(rep_id text, day date, n integer)
        ON CONFLICT (rep_id, day) DO UPDATE
           SET assigned = router.rep_loads.assigned + EXCLUDED.assigned,
               last_assigned_at = EXCLUDED.last_assigned_at
        """,
        json_document([row.row() for row in decisions]),
        _suppressions_json(suppressions),
        json_document(
            [{"rep_id": rep, "day": day, "n": n} for (rep, day), n in sorted(counts.items())]
        ),
        at,
        json_document(checked),  # dataclasses: objects keyed by field name
    )


def _suppressions_json(suppressions: Sequence[Suppression]) -> str:
    return json_document(
        [
            {"t": r.transition_id, "l": r.lead_id, "e": r.email, "s": r.stage, "r": r.reason}
            for r in suppressions
        ]
    )


@dataclass(frozen=True)
class NewDecision:
    decision: RoutingDecision
    transition_id: str
    teams: tuple[str, ...] = ()
    closed_reason: str | None = None  # set: the decision is closed at birth (a later change)

    def row(self) -> dict[str, Any]:
        """The row as `record_batch` reads it (jsonb_to_recordset column names); the payload is
        the decision's JSON, embedded as is."""
        d = self.decision
        closed = self.closed_reason is not None
        return {
            "d": d.decision_id,
            "t": self.transition_id,
            "l": d.lead_id,
            "r": d.route,
            "o": d.owner.id if d.owner else None,
            "tr": d.track,
            "q": d.queue,
            "st": d.strategy,
            "e": d.email,
            "tm": self.teams,
            "su": d.supersedes,
            "da": d.decided_at,
            "due": d.sla_due_at,
            "nc": None if closed else d.sla_due_at,  # next_check_at: an open timer
            "ca": d.decided_at if closed else None,
            "cr": self.closed_reason,
            "p": orjson.Fragment(d.model_dump_json(by_alias=True)),
        }


@dataclass(frozen=True, slots=True)
class Suppression:
    transition_id: str
    lead_id: str
    email: str | None
    stage: str
    reason: str


@dataclass(frozen=True)
class OpenDecision:
    """A decision row as the SLA check needs it (read under its row lock)."""

    decision_id: str
    transition_id: str
    lead_id: str
    strategy: str | None
    teams: tuple[str, ...]
    sla_due_at: datetime | None
    closed: bool
    decision: RoutingDecision


@dataclass(frozen=True, slots=True)
class CheckedDecision:
    """What an SLA check did to an open decision: closed it (`closed_at`, `closed_reason`; its
    timer stops), or set when it is looked at again (`next_check_at`; None: never)."""

    decision_id: str
    next_check_at: datetime | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None


async def lock_decisions(
    db: asyncpg.Connection, decision_ids: Iterable[str]
) -> dict[str, OpenDecision]:
    """Row-lock the decisions (in id order) for the rest of the transaction."""
    ids = sorted(set(decision_ids))
    if not ids:
        return {}
    rows = await db.fetch(
        """
        SELECT decision_id, transition_id, lead_id, strategy, teams, sla_due_at,
               closed_at IS NOT NULL, payload
          FROM router.decisions
         WHERE decision_id = ANY($1::text[])
         ORDER BY decision_id
           FOR UPDATE
        """,
        ids,
    )
    return {
        row[0]: OpenDecision(
            decision_id=row[0],
            transition_id=row[1],
            lead_id=row[2],
            strategy=row[3],
            teams=tuple(row[4] or ()),
            sla_due_at=row[5],
            closed=row[6],
            decision=RoutingDecision.model_validate(_json(row[7])),
        )
        for row in rows
    }


async def get_transition_owners(
    db: asyncpg.Connection, transition_ids: Iterable[str]
) -> dict[str, tuple[set[str], int]]:
    """For each transition: who already had its lead, and how many decisions it has had (a
    transition without decisions is left out). One statement, an index probe per transition."""
    ids = sorted(set(transition_ids))
    if not ids:
        return {}
    rows = await db.fetch(
        """
        SELECT d.transition_id, d.owner_id
          FROM unnest($1::text[]) AS k(id)
         CROSS JOIN LATERAL (SELECT transition_id, owner_id FROM router.decisions d
                              WHERE d.transition_id = k.id OFFSET 0) AS d
        """,
        ids,
    )
    owners: dict[str, tuple[set[str], int]] = {}
    for transition_id, owner_id in rows:
        had, count = owners.get(transition_id, (set(), 0))
        if owner_id:
            had.add(owner_id)
        owners[transition_id] = (had, count + 1)
    return owners


@dataclass(frozen=True, slots=True)
class Feedback:
    """A CRM outcome that closes a lead's open decisions (by lead id and/or email)."""

    lead_id: str | None
    email: str | None
    reason: str
    at: datetime  # when sales acted: compared with each closed decision's SLA


async def close_on_feedback(
    db: asyncpg.Connection, feedback: Sequence[Feedback], *, at: datetime
) -> list[tuple[datetime | None, datetime]]:
    """Close the open decisions of each feedback's lead (its lead id, or its email, lower
    case); a decision that several feedback items match is closed by the first, with its
    reason. Returns (sla_due_at, feedback at) of each decision closed, so the caller can tell
    met from missed SLAs. One statement for the batch."""
    if not feedback:
        return []
    rows = await db.fetch(
        """
        WITH f AS (
            SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                   AS f(n, lead_id, email, reason, at)
        ), hit AS (
            SELECT DISTINCT ON (d.decision_id) d.decision_id, f.reason, f.at
              FROM f
              JOIN router.decisions d
                ON d.closed_at IS NULL AND (d.lead_id = f.lead_id OR d.email = f.email)
             ORDER BY d.decision_id, f.n
        )
        UPDATE router.decisions d
           SET closed_at = $6, closed_reason = hit.reason, next_check_at = NULL
          FROM hit
         WHERE d.decision_id = hit.decision_id
        RETURNING d.sla_due_at, hit.at
        """,
        list(range(len(feedback))),
        [f.lead_id for f in feedback],
        [f.email.lower() if f.email else None for f in feedback],
        [f.reason for f in feedback],
        [f.at for f in feedback],
        at,
    )
    return [(row[0], row[1]) for row in rows]


async def record_breaches(
    db: asyncpg.Connection, decisions: Sequence[OpenDecision], *, at: datetime
) -> int:
    """Record that each decision's SLA passed unaccepted (one statement); returns how many were
    not recorded before (a decision checked again after a crash is recorded once)."""
    if not decisions:
        return 0
    recorded = await db.fetchval(
        """
        WITH recorded AS (
            INSERT INTO router.sla_breaches (decision_id, lead_id, owner_id, queue, due_at,
                                             breached_at)
            SELECT d, l, o, q, due, $2
              FROM jsonb_to_recordset($1::jsonb)
                   AS b(d text, l text, o text, q text, due timestamptz)
            ON CONFLICT (decision_id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM recorded
        """,
        json_document(
            [
                {
                    "d": d.decision_id,
                    "l": d.lead_id,
                    "o": d.decision.owner.id if d.decision.owner else None,
                    "q": d.decision.queue,
                    "due": d.sla_due_at,
                }
                for d in decisions
            ]
        ),
        at,
    )
    return int(recorded)


async def claim_due_checks(
    session: AsyncSession, *, now: datetime, recheck_at: datetime, limit: int
) -> list[tuple[str, str]]:
    """(decision_id, lead_id) of open decisions whose SLA check is due, pushed to `recheck_at`
    so that the next round (or another instance: SKIP LOCKED) does not claim them again
    before their check had a chance to run. Uses the partial index on next_check_at."""
    rows = await session.execute(
        text(
            """
            UPDATE router.decisions d
               SET next_check_at = :recheck_at
              FROM (SELECT decision_id FROM router.decisions
                     WHERE next_check_at <= :now
                     ORDER BY next_check_at
                     LIMIT :limit
                       FOR UPDATE SKIP LOCKED) due
             WHERE d.decision_id = due.decision_id
            RETURNING d.decision_id, d.lead_id
            """
        ),
        {"now": now, "recheck_at": recheck_at, "limit": limit},
    )
    return [(row[0], row[1]) for row in rows]


async def next_check_after(session: AsyncSession, now: datetime) -> datetime | None:
    """The earliest SLA check scheduled after `now` (None: no open timer). One probe of the
    partial index on next_check_at."""
    row = await session.execute(
        text("SELECT min(next_check_at) FROM router.decisions WHERE next_check_at > :now"),
        {"now": now},
    )
    value: datetime | None = row.scalar_one()
    return value


# ---- the lead's routing history (operators, CLI and HTTP) --------------------------------------


async def lead_history(session: AsyncSession, key: str) -> dict[str, Any] | None:
    """Decisions (with their SLA outcome), suppressions and breaches of a lead, by lead_id or
    email, oldest first; None if the router never saw it."""
    lead_row = await session.execute(
        text(
            """
            SELECT lead_id FROM router.decisions WHERE lead_id = :key OR email = lower(:key)
            UNION
            SELECT lead_id FROM router.suppressions WHERE lead_id = :key OR email = lower(:key)
            LIMIT 1
            """
        ),
        {"key": key},
    )
    lead_id = lead_row.scalar_one_or_none()
    if lead_id is None:
        return None
    decisions = await session.execute(
        text(
            """
            SELECT payload, closed_at, closed_reason FROM router.decisions
             WHERE lead_id = :lead ORDER BY decided_at, decision_id
            """
        ),
        {"lead": lead_id},
    )
    suppressions = await session.execute(
        text(
            """
            SELECT transition_id, stage, reason, recorded_at FROM router.suppressions
             WHERE lead_id = :lead ORDER BY recorded_at
            """
        ),
        {"lead": lead_id},
    )
    breaches = await session.execute(
        text(
            """
            SELECT decision_id, owner_id, queue, due_at, breached_at FROM router.sla_breaches
             WHERE lead_id = :lead ORDER BY breached_at
            """
        ),
        {"lead": lead_id},
    )
    return {
        "lead_id": lead_id,
        "decisions": [
            {**_json(row[0]), "closed_at": _iso(row[1]), "closed_reason": row[2]}
            for row in decisions
        ],
        "suppressions": [
            {"transition_id": r[0], "stage": r[1], "reason": r[2], "recorded_at": _iso(r[3])}
            for r in suppressions
        ],
        "sla_breaches": [
            {
                "decision_id": r[0],
                "owner_id": r[1],
                "queue": r[2],
                "due_at": _iso(r[3]),
                "breached_at": _iso(r[4]),
            }
            for r in breaches
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _json(raw: Any) -> Any:
    # asyncpg hands jsonb over as text unless a codec is registered; accept both.
    return orjson.loads(raw) if isinstance(raw, bytes | str) else raw
