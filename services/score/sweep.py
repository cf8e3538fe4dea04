"""Periodic work of the score service, done through `score.commands` so that the consumer
applies it with exactly-once effects.

- The decay sweep: MQLs whose score may have decayed below the line without a new event. Every
  round it asks to re-evaluate the MQLs least recently evaluated (recycling a lead that stayed
  below the line long enough). Asking twice is harmless: a later re-evaluation only repeats the
  arithmetic.
- The rescore sweep: after a rules change, leads still scored under another version are asked
  to be rescored, a batch per round, while live scoring goes on; progress is logged and on
  `leadflow_score_leads_to_rescore`. A lead already rescored ignores a repeated request.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.config import ScoreSettings
from shared.codec import encode
from shared.contracts import ScoreCommand
from shared.topics import SCORE_COMMANDS

log = logging.getLogger(__name__)

LEADS_TO_RESCORE = Gauge(
    "leadflow_score_leads_to_rescore", "Leads still scored under another rules version"
)


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
    await _request(
        producer,
        settings,
        [
            ScoreCommand(
                command_id=f"sweep:{at.isoformat()}:{lead_id}",
                kind="reevaluate",
                lead_id=lead_id,
                at=at,
            )
            for lead_id in lead_ids
        ],
    )
    if lead_ids:
        log.info("decay sweep: %d MQLs to re-evaluate", len(lead_ids))
    return len(lead_ids)


async def sweep_leads_on_old_rules(
    *,
    sessions: async_sessionmaker[AsyncSession],
    producer: AIOKafkaProducer,
    settings: ScoreSettings,
    version: str,
    now: datetime | None = None,
) -> int:
    """One round; returns how many rescores were requested."""
    at = now or datetime.now(UTC)
    async with sessions() as session:
        lead_ids, remaining = await repository.leads_on_other_rules(
            session, version=version, limit=settings.sweep_batch
        )
    LEADS_TO_RESCORE.set(remaining)
    await _request(
        producer,
        settings,
        [
            ScoreCommand(
                command_id=f"rescore:{version}:{lead_id}", kind="rescore", lead_id=lead_id, at=at
            )
            for lead_id in lead_ids
        ],
    )
    if lead_ids:
        log.info("rescoring under rules %s: %d leads to go", version, remaining)
    return len(lead_ids)


async def _request(
    producer: AIOKafkaProducer, settings: ScoreSettings, commands: list[ScoreCommand]
) -> None:
    """Produce the commands keyed by lead and return once the broker acknowledged them all."""
    topic = SCORE_COMMANDS.full_name(settings.kafka.topic_prefix)
    acks = [
        await producer.send(topic, encode(command), key=command.lead_id.encode())
        for command in commands
    ]
    await asyncio.gather(*acks)
