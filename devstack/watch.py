"""Prints routing decisions as CRMs would receive them, with their speed-to-lead."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from shared.codec import UndecodableMessage, decode
from shared.contracts import RoutingDecision
from shared.kafka import aiokafka_connection
from shared.settings import KafkaSettings
from shared.topics import ROUTING_NURTURE, ROUTING_SDR


def describe(decision: RoutingDecision) -> str:
    who = decision.email or decision.lead_id
    score = f"{decision.score.grade} {decision.score.total:>4}"
    how = f" [{decision.strategy}]" if decision.strategy not in (None, "nurture_track") else ""
    if decision.owner is not None:
        target = f"SDR      -> {decision.owner.name} ({decision.owner.team}){how}"
    elif decision.queue is not None:
        target = f"SDR      -> queue {decision.queue}"
    else:
        target = f"NURTURE  -> {decision.track}"
    at = decision.decided_at.strftime("%H:%M:%S")
    return (
        f"{at}  {target:<60} {who:<40} {decision.stage.value:<5} score {score}  "
        f"speed-to-lead {decision.speed_to_lead_ms} ms"
    )


async def print_decisions(
    bootstrap: str, prefix: str, *, stop: asyncio.Event, show: Callable[[str], None]
) -> None:
    """`show` each decision made since the stack started, until `stop`.

    The stack's topics are new with each start (the development broker keeps them in memory),
    so the display reads them from the beginning: a decision made while its consumer was still
    joining (the first ones after "ready") is shown too."""
    consumer = AIOKafkaConsumer(
        ROUTING_SDR.full_name(prefix),
        ROUTING_NURTURE.full_name(prefix),
        **aiokafka_connection(KafkaSettings(bootstrap_servers=bootstrap)),
        group_id=f"leadflow-watch-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # Delivery is at-least-once: a consumer of decisions dedupes by decision_id, as CRMs must.
    seen: collections.deque[str] = collections.deque(maxlen=10_000)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    with contextlib.suppress(UndecodableMessage):
                        decision = decode(record.value, RoutingDecision)
                        if decision.decision_id not in seen:
                            seen.append(decision.decision_id)
                            show(describe(decision))
    finally:
        await consumer.stop()
