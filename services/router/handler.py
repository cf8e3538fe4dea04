"""The consumer handler: `leads.lifecycle` -> `routing.sdr` / `routing.nurture`.

One decision per lifecycle transition: the decision id is derived from the transition id and
recorded in the same transaction, so a replayed transition (even from another consumer group
or after the offsets were lost) finds its decision and emits nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.router import repository
from services.router.domain import (
    Suppressed,
    ToNurture,
    ToSdr,
    choose_owner,
    choose_route,
    sla_due_at,
)
from services.router.metrics import SPEED_TO_LEAD
from services.router.routing_config import RoutingConfig
from shared.consumer import Message, Output
from shared.contracts import LifecycleChanged, Owner, RoutingDecision
from shared.topics import ROUTING_NURTURE, ROUTING_SDR

DECISION_NAMESPACE = uuid.UUID("5f0c3c55-4a1e-4f4e-9d7e-6c0f3b7a1d20")


class RouterHandler:
    def __init__(self, config: RoutingConfig) -> None:
        self._config = config

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        changes = [m.value for m in messages if isinstance(m.value, LifecycleChanged)]
        decided = await repository.get_decided_transitions(
            session, (c.transition_id for c in changes)
        )
        outputs: list[Output] = []
        for change in changes:
            if change.transition_id in decided:
                continue
            decided.add(change.transition_id)
            route = choose_route(change, self._config)
            if route is None:
                continue
            if isinstance(route, Suppressed):
                await repository.record_suppression(
                    session,
                    transition_id=change.transition_id,
                    lead_id=change.lead_id,
                    reason=route.reason,
                )
                continue
            decision = await self._decide(session, change, route)
            await repository.record_decision(
                session, transition_id=change.transition_id, decision=decision
            )
            topic = ROUTING_SDR if decision.route == "sdr" else ROUTING_NURTURE
            outputs.append(Output(topic, key=decision.lead_id, value=decision))
        return outputs

    async def _decide(
        self, session: AsyncSession, change: LifecycleChanged, route: ToSdr | ToNurture
    ) -> RoutingDecision:
        owner = None
        if isinstance(route, ToSdr):
            team = self._config.team(route.team)
            rep = choose_owner(team.reps, turn=await repository.take_turn(session, team.name))
            owner = Owner(id=rep.id, name=rep.name, email=rep.email, team=team.name)
        decided_at = datetime.now(UTC)
        speed_ms = max(int((decided_at - change.received_at).total_seconds() * 1000), 0)
        SPEED_TO_LEAD.labels(route="sdr" if owner else "nurture").observe(speed_ms / 1000)
        profile = change.profile
        name = " ".join(p for p in (profile.first_name, profile.last_name) if p) or None
        return RoutingDecision(
            decision_id=str(uuid.uuid5(DECISION_NAMESPACE, change.transition_id)),
            lead_id=change.lead_id,
            route="sdr" if owner else "nurture",
            email=profile.email,
            name=name,
            company=profile.company,
            stage=change.to_stage,
            score=change.score,
            owner=owner,
            track=route.track if isinstance(route, ToNurture) else None,
            reasons=list(route.reasons),
            account_id=change.account_id,
            received_at=change.received_at,
            decided_at=decided_at,
            sla_due_at=(
                sla_due_at(decided_at, grade=change.score.grade, config=self._config)
                if owner
                else None
            ),
            speed_to_lead_ms=speed_ms,
        )
