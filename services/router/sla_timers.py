"""The SLA timer: a companion that finds sdr decisions past their `sla_due_at` with no word
from the CRM and asks the router's consumer to act on them (`router.commands` sla_check).

The timer itself changes nothing a CRM sees: the consumer re-checks each decision under its row
lock and does the reassignment exactly once, with the outbox like any other decision. Claiming
moves a decision's `next_check_at` forward (to `sla_recheck_s`), so a check lost with a crash
between the claim and the produce is simply claimed again later; several router instances
claim disjoint decisions (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.config import RouterSettings
from shared.codec import encode
from shared.contracts import RouterCommand
from shared.topics import ROUTER_COMMANDS

log = logging.getLogger(__name__)


async def request_sla_checks(
    *,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    settings: RouterSettings,
    now: datetime | None = None,
) -> int:
    """One round; returns how many checks were requested (and acknowledged by the broker)."""
    at = now or datetime.now(UTC)
    async with sessions() as session, session.begin():
        due = await repository.claim_due_checks(
            session,
            now=at,
            recheck_at=at + timedelta(seconds=settings.sla_recheck_s),
            limit=settings.sla_check_batch,
        )
    topic = ROUTER_COMMANDS.full_name(settings.kafka.topic_prefix)
    acks = [
        await producer.send(
            topic,
            encode(
                RouterCommand(
                    command_id=f"sla:{decision_id}:{at.isoformat()}",
                    kind="sla_check",
                    lead_id=lead_id,
                    decision_id=decision_id,
                    at=at,
                )
            ),
            key=lead_id.encode(),
        )
        for decision_id, lead_id in due
    ]
    await asyncio.gather(*acks)
    if due:
        log.info("SLA timer: %d decisions past due", len(due))
    return len(due)
