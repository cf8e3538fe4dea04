"""The demo's CRM: it reads the SDR decisions and reports, on `crm.feedback`, what sales did
with each lead, the way a CRM connector would. So the local stack shows the whole funnel (SQL,
SQO, customers, lost leads), speed-to-lead to acceptance and SLA outcomes in the console.

Per SDR decision with an owner: the rep accepts after a few seconds (`ACCEPT_MEAN_S`), except
one in `NEVER_ACCEPTED` (the SLA timer then reassigns the lead); an accepted lead is qualified
or disqualified a little later, and a qualified one is won or lost. Every report's id derives
from the decision (uuid5), so a decision read twice is reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.codec import UndecodableMessage, decode, encode
from shared.contracts import CrmFeedback, RoutingDecision
from shared.contracts.crm_feedback import Outcome
from shared.kafka import aiokafka_connection, create_producer
from shared.settings import KafkaSettings
from shared.topics import CRM_FEEDBACK, ROUTING_SDR

ACCEPT_MEAN_S = 8.0
NEVER_ACCEPTED = 0.15
NAMESPACE = uuid.UUID("6d1f3f0a-2b7c-4c55-9d55-1f6c1b0e7a01")


async def act_as_crm(bootstrap: str, *, stop: asyncio.Event, seed: int = 7) -> None:
    """Report outcomes for the SDR decisions made since the stack started, until `stop`."""
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        ROUTING_SDR.full_name(),
        **aiokafka_connection(settings),
        group_id=f"leadflow-demo-crm-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = create_producer(settings, client_id="leadflow-demo-crm")
    rng = random.Random(seed)
    reported: set[str] = set()
    pending: set[asyncio.Task[None]] = set()
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                for record in records:
                    with contextlib.suppress(UndecodableMessage):
                        decision = decode(record.value, RoutingDecision)
                        if decision.owner is None or decision.decision_id in reported:
                            continue
                        reported.add(decision.decision_id)
                        if rng.random() < NEVER_ACCEPTED:
                            continue
                        task = asyncio.create_task(_sales(producer, decision, rng))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
    finally:
        for task in pending:
            task.cancel()
        await consumer.stop()
        await producer.stop()


async def _sales(producer: AIOKafkaProducer, decision: RoutingDecision, rng: random.Random) -> None:
    """One lead's story in sales: accepted, then qualified or not, then won or lost."""
    steps: list[tuple[float, Outcome]] = [(rng.expovariate(1 / ACCEPT_MEAN_S), "accepted")]
    if rng.random() < 0.6:
        steps.append((rng.uniform(20, 60), "qualified"))
        steps.append((rng.uniform(30, 90), "won" if rng.random() < 0.45 else "lost"))
    else:
        steps.append((rng.uniform(20, 60), "disqualified" if rng.random() < 0.5 else "rejected"))
    for wait_s, outcome in steps:
        await asyncio.sleep(wait_s)
        report = CrmFeedback(
            feedback_id=str(uuid.uuid5(NAMESPACE, f"{decision.decision_id}:{outcome}")),
            lead_id=decision.lead_id,
            outcome=outcome,
            owner_id=decision.owner.id if decision.owner is not None else None,
            at=datetime.now(UTC),
        )
        await producer.send_and_wait(
            CRM_FEEDBACK.full_name(), encode(report), key=decision.lead_id.encode()
        )
