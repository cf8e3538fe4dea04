"""router's tables (schema `router`): decisions, suppressions, round-robin turns."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.codec import encode
from shared.contracts import RoutingDecision

SCHEMA = "router"


async def get_decided_transitions(session: AsyncSession, transition_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(transition_ids))
    if not ids:
        return set()
    rows = await session.execute(
        text(
            """
            SELECT transition_id FROM router.decisions WHERE transition_id = ANY(CAST(:ids AS text[]))
            UNION
            SELECT transition_id FROM router.suppressions WHERE transition_id = ANY(CAST(:ids AS text[]))
            """
        ),
        {"ids": ids},
    )
    return {row[0] for row in rows}


async def take_turn(session: AsyncSession, team: str) -> int:
    """The team's next round-robin turn. The row lock makes two routers take different turns."""
    row = await session.execute(
        text(
            """
            INSERT INTO router.team_turns (team, next_turn) VALUES (:team, 1)
            ON CONFLICT (team) DO UPDATE SET next_turn = router.team_turns.next_turn + 1
            RETURNING next_turn - 1
            """
        ),
        {"team": team},
    )
    return int(row.scalar_one())


async def record_decision(
    session: AsyncSession, *, transition_id: str, decision: RoutingDecision
) -> None:
    await session.execute(
        text(
            """
            INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, owner_id,
                                          track, decided_at, sla_due_at, payload)
            VALUES (:decision_id, :transition_id, :lead_id, :route, :owner_id, :track,
                    :decided_at, :sla_due_at, CAST(:payload AS jsonb))
            """
        ),
        {
            "decision_id": decision.decision_id,
            "transition_id": transition_id,
            "lead_id": decision.lead_id,
            "route": decision.route,
            "owner_id": decision.owner.id if decision.owner else None,
            "track": decision.track,
            "decided_at": decision.decided_at,
            "sla_due_at": decision.sla_due_at,
            "payload": encode(decision).decode(),
        },
    )


async def record_suppression(
    session: AsyncSession, *, transition_id: str, lead_id: str, reason: str
) -> None:
    await session.execute(
        text(
            """
            INSERT INTO router.suppressions (transition_id, lead_id, reason)
            VALUES (:transition_id, :lead_id, :reason)
            """
        ),
        {"transition_id": transition_id, "lead_id": lead_id, "reason": reason},
    )
