"""The decay sweep: MQLs whose score may have decayed below the line without a new event.

Every round it asks `score.commands` to re-evaluate the MQLs least recently evaluated; the
consumer applies each command exactly once (recycling a lead that stayed below the line long
enough). Asking twice is harmless: a re-evaluation at a later time only repeats the arithmetic.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.config import ScoreSettings
from shared.codec import encode
from shared.contracts import ScoreCommand
from shared.topics import SCORE_COMMANDS

log = logging.getLogger(__name__)


async def sweep_decayed_mqls(
    *,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    settings: ScoreSettings,
    now: datetime | None = None,
) -> int:
    """One round; returns how many re-evaluations were requested (and acknowledged)."""
    at = now or datetime.now(UTC)
    async with sessions() as session:
        lead_ids = await repository.mqls_to_reevaluate(
            session,
            evaluated_before=at - timedelta(seconds=settings.sweep_stale_after_s),
            limit=settings.sweep_batch,
        )
    topic = SCORE_COMMANDS.full_name(settings.kafka.topic_prefix)
    acks = [
        await producer.send(
            topic,
            encode(
                ScoreCommand(
                    command_id=f"sweep:{at.isoformat()}:{lead_id}",
                    kind="reevaluate",
                    lead_id=lead_id,
                    at=at,
                )
            ),
            key=lead_id.encode(),
        )
        for lead_id in lead_ids
    ]
    await asyncio.gather(*acks)
    if lead_ids:
        log.info("decay sweep: %d MQLs to re-evaluate", len(lead_ids))
    return len(lead_ids)
