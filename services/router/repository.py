"""router's tables (schema `router`): decisions (with their SLA timers), suppressions, SLA
breaches and the reps' daily loads. Every function runs in the caller's transaction.

Lock order, the same everywhere so that two router instances never deadlock on each other:
decision rows (`lock_decisions`, sorted by id), then team locks (`lock_teams`, sorted by name).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.router.assignment import RepLoad
from shared.codec import encode
from shared.contracts import RoutingDecision

SCHEMA = "router"


async def get_decided_transitions(session: AsyncSession, transition_ids: Iterable[str]) -> set[str]:
    """Transitions that already have a decision or a suppression (a replay must add nothing)."""
    ids = sorted(set(transition_ids))
    if not ids:
        return set()
    rows = await session.execute(
        text(
            """
            SELECT transition_id FROM router.decisions
             WHERE transition_id = ANY(CAST(:ids AS text[])) AND supersedes IS NULL
            UNION
            SELECT transition_id FROM router.suppressions WHERE transition_id = ANY(CAST(:ids AS text[]))
            """
        ),
        {"ids": ids},
    )
    return {row[0] for row in rows}


async def lock_teams(session: AsyncSession, teams: Iterable[str]) -> None:
    """Hold each team's lock until the transaction ends: assignments in a team are serialised
    across router instances, so a rep's daily count (and cap) is never read stale. Taken one
    at a time in name order (a consistent order cannot deadlock)."""
    for team in sorted(set(teams)):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"leadflow.router.team:{team}"},
        )


async def get_rep_loads(session: AsyncSession, days: Mapping[str, date]) -> dict[str, RepLoad]:
    """Each rep's assignments on the given (local) day; reps without any are left out."""
    if not days:
        return {}
    rep_ids = sorted(days)
    rows = await session.execute(
        text(
            """
            SELECT l.rep_id, l.assigned, l.last_assigned_at
              FROM router.rep_loads l
              JOIN unnest(CAST(:reps AS text[]), CAST(:days AS date[])) AS d(rep_id, day)
                ON l.rep_id = d.rep_id AND l.day = d.day
            """
        ),
        {"reps": rep_ids, "days": [days[r] for r in rep_ids]},
    )
    return {row[0]: RepLoad(assigned_today=row[1], last_assigned_at=row[2]) for row in rows}


async def add_assignments(
    session: AsyncSession, assignments: Iterable[tuple[str, date]], *, at: datetime
) -> None:
    """Count one assignment per (rep, local day) pair given."""
    counts = Counter(assignments)
    if not counts:
        return
    keys = sorted(counts)
    await session.execute(
        text(
            """
            INSERT INTO router.rep_loads (rep_id, day, assigned, last_assigned_at)
            SELECT rep_id, day, n, CAST(:at AS timestamptz)
              FROM unnest(CAST(:reps AS text[]), CAST(:days AS date[]), CAST(:counts AS int[]))
                   AS t(rep_id, day, n)
            ON CONFLICT (rep_id, day) DO UPDATE
               SET assigned = router.rep_loads.assigned + EXCLUDED.assigned,
                   last_assigned_at = EXCLUDED.last_assigned_at
            """
        ),
        {
            "reps": [k[0] for k in keys],
            "days": [k[1] for k in keys],
            "counts": [counts[k] for k in keys],
            "at": at,
        },
    )


async def record_decisions(session: AsyncSession, rows: list[NewDecision]) -> None:
    if not rows:
        return
    await session.execute(
        text(
            """
            INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, owner_id,
                track, queue, strategy, email, teams, supersedes, decided_at, sla_due_at,
                next_check_at, closed_at, closed_reason, payload)
            VALUES (:decision_id, :transition_id, :lead_id, :route, :owner_id, :track, :queue,
                :strategy, :email, CAST(:teams AS text[]), :supersedes, :decided_at, :sla_due_at,
                :next_check_at, :closed_at, :closed_reason, CAST(:payload AS jsonb))
            """
        ),
        [row.parameters() for row in rows],
    )


@dataclass(frozen=True)
class NewDecision:
    decision: RoutingDecision
    transition_id: str
    teams: tuple[str, ...] = ()
    closed_reason: str | None = None  # set: the decision is closed at birth (a later change)

    def parameters(self) -> dict[str, Any]:
        d = self.decision
        open_timer = d.sla_due_at if self.closed_reason is None else None
        return {
            "decision_id": d.decision_id,
            "transition_id": self.transition_id,
            "lead_id": d.lead_id,
            "route": d.route,
            "owner_id": d.owner.id if d.owner else None,
            "track": d.track,
            "queue": d.queue,
            "strategy": d.strategy,
            "email": d.email,
            "teams": list(self.teams),
            "supersedes": d.supersedes,
            "decided_at": d.decided_at,
            "sla_due_at": d.sla_due_at,
            "next_check_at": open_timer,
            "closed_at": d.decided_at if self.closed_reason else None,
            "closed_reason": self.closed_reason,
            "payload": encode(d).decode(),
        }


async def record_suppressions(session: AsyncSession, rows: list[dict[str, str | None]]) -> None:
    """Rows of transition_id, lead_id, email, stage, reason."""
    if rows:
        await session.execute(
            text(
                """
                INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
                VALUES (:transition_id, :lead_id, :email, :stage, :reason)
                """
            ),
            rows,
        )


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


async def lock_decisions(
    session: AsyncSession, decision_ids: Iterable[str]
) -> dict[str, OpenDecision]:
    """Row-lock the decisions (in id order) for the rest of the transaction."""
    ids = sorted(set(decision_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT decision_id, transition_id, lead_id, strategy, teams, sla_due_at,
                   closed_at IS NOT NULL, payload
              FROM router.decisions
             WHERE decision_id = ANY(CAST(:ids AS text[]))
             ORDER BY decision_id
               FOR UPDATE
            """
        ),
        {"ids": ids},
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


async def get_transition_owners(session: AsyncSession, transition_id: str) -> tuple[set[str], int]:
    """Who already had this transition's lead, and how many decisions it has had."""
    rows = (
        await session.execute(
            text("SELECT owner_id FROM router.decisions WHERE transition_id = :t"),
            {"t": transition_id},
        )
    ).all()
    return {row[0] for row in rows if row[0]}, len(rows)


async def close_open_decisions(
    session: AsyncSession,
    *,
    lead_ids: Iterable[str] = (),
    emails: Iterable[str] = (),
    at: datetime,
    reason: str,
) -> list[tuple[str, datetime | None]]:
    """Close the leads' open decisions (stop their SLA timers). Returns (decision_id, sla_due_at)
    of each decision closed, so the caller can tell met from missed SLAs."""
    leads, mails = sorted(set(lead_ids)), sorted({e.lower() for e in emails})
    if not leads and not mails:
        return []
    rows = await session.execute(
        text(
            """
            UPDATE router.decisions
               SET closed_at = :at, closed_reason = :reason, next_check_at = NULL
             WHERE closed_at IS NULL
               AND (lead_id = ANY(CAST(:leads AS text[])) OR email = ANY(CAST(:mails AS text[])))
            RETURNING decision_id, sla_due_at
            """
        ),
        {"leads": leads, "mails": mails, "at": at, "reason": reason},
    )
    return [(row[0], row[1]) for row in rows]


async def close_decision(
    session: AsyncSession, decision_id: str, *, at: datetime, reason: str
) -> None:
    await session.execute(
        text(
            """
            UPDATE router.decisions
               SET closed_at = :at, closed_reason = :reason, next_check_at = NULL
             WHERE decision_id = :id
            """
        ),
        {"id": decision_id, "at": at, "reason": reason},
    )


async def set_next_check(session: AsyncSession, decision_id: str, *, at: datetime | None) -> None:
    await session.execute(
        text("UPDATE router.decisions SET next_check_at = :at WHERE decision_id = :id"),
        {"id": decision_id, "at": at},
    )


async def record_breach(session: AsyncSession, *, decision: OpenDecision, at: datetime) -> bool:
    """Record that the decision's SLA passed unaccepted; False if it was already recorded."""
    owner = decision.decision.owner
    result = await session.execute(
        text(
            """
            INSERT INTO router.sla_breaches (decision_id, lead_id, owner_id, queue, due_at,
                                             breached_at)
            VALUES (:decision_id, :lead_id, :owner_id, :queue, :due_at, :at)
            ON CONFLICT (decision_id) DO NOTHING
            RETURNING decision_id
            """
        ),
        {
            "decision_id": decision.decision_id,
            "lead_id": decision.lead_id,
            "owner_id": owner.id if owner else None,
            "queue": decision.decision.queue,
            "due_at": decision.sla_due_at,
            "at": at,
        },
    )
    return result.first() is not None


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
