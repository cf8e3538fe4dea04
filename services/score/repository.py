"""score's tables (schema `score`): lead state, the points ledger, the stage history."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.score.domain import LeadState
from shared.contracts import Stage

SCHEMA = "score"


@dataclass(frozen=True)
class LedgerEntry:
    lead_id: str
    message_id: str
    rule_id: str
    points: int
    rule_version: str
    event_time: datetime


@dataclass(frozen=True)
class StageChange:
    transition_id: str
    lead_id: str
    from_stage: Stage
    to_stage: Stage
    reason: str
    at: datetime


async def get_lead_states(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadState]:
    """States of the given leads, row-locked for this transaction."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = await session.execute(
        text(
            """
            SELECT lead_id, stage, fit, behaviour, engaged, fit_rules_awarded
            FROM score.leads WHERE lead_id = ANY(CAST(:ids AS text[]))
            ORDER BY lead_id
            FOR UPDATE
            """
        ),
        {"ids": ids},
    )
    return {
        row.lead_id: LeadState(
            lead_id=row.lead_id,
            stage=Stage(row.stage),
            fit=row.fit,
            behaviour=row.behaviour,
            engaged=row.engaged,
            fit_rules_awarded=frozenset(row.fit_rules_awarded),
        )
        for row in rows
    }


async def save_lead_states(session: AsyncSession, states: Sequence[LeadState]) -> None:
    if not states:
        return
    await session.execute(
        text(
            """
            INSERT INTO score.leads (lead_id, stage, fit, behaviour, engaged, fit_rules_awarded)
            VALUES (:lead_id, :stage, :fit, :behaviour, :engaged, :fit_rules_awarded)
            ON CONFLICT (lead_id) DO UPDATE SET
                stage = EXCLUDED.stage, fit = EXCLUDED.fit, behaviour = EXCLUDED.behaviour,
                engaged = EXCLUDED.engaged, fit_rules_awarded = EXCLUDED.fit_rules_awarded,
                updated_at = now()
            """
        ),
        [
            {
                "lead_id": s.lead_id,
                "stage": s.stage.value,
                "fit": s.fit,
                "behaviour": s.behaviour,
                "engaged": s.engaged,
                "fit_rules_awarded": sorted(s.fit_rules_awarded),
            }
            for s in states
        ],
    )


async def add_to_ledger(session: AsyncSession, entries: Sequence[LedgerEntry]) -> None:
    """Record every point. The key (lead, message, rule) makes a second write of the same point
    impossible, whatever the caller does."""
    if not entries:
        return
    await session.execute(
        text(
            """
            INSERT INTO score.ledger (lead_id, message_id, rule_id, points, rule_version, event_time)
            VALUES (:lead_id, :message_id, :rule_id, :points, :rule_version, :event_time)
            """
        ),
        [e.__dict__ for e in entries],
    )


async def record_stage_changes(session: AsyncSession, changes: Sequence[StageChange]) -> None:
    if not changes:
        return
    await session.execute(
        text(
            """
            INSERT INTO score.stage_changes (transition_id, lead_id, from_stage, to_stage, reason, at)
            VALUES (:transition_id, :lead_id, :from_stage, :to_stage, :reason, :at)
            """
        ),
        [
            {**c.__dict__, "from_stage": c.from_stage.value, "to_stage": c.to_stage.value}
            for c in changes
        ],
    )
