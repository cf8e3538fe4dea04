"""The counters the alerts watch with `increase()` exist at 0 from the start: Prometheus sees a
counter grow only between two scrapes, so a series whose first scrape shows 1 would hide the
first dead letter (or rewind) of a process from LeadflowDeadLetters, LeadflowRecordsRewound and
LeadflowSyncDeadLetters. Nothing here connects: the engine is lazy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from services.sync.config import SyncSettings
from services.sync.delivery import Deliveries
from services.sync.destinations import load_destinations
from shared.consumer import ConsumerRunner, Message, Output
from shared.db import create_engine, create_sessionmaker
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE

pytestmark = pytest.mark.unit

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a well-formed test secret
NOWHERE = DatabaseSettings(url=SecretStr("postgresql+asyncpg://nobody@127.0.0.1:1/none"))


def sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_a_runner_s_dead_letters_and_rewinds_are_at_zero_per_topic_before_any() -> None:
    service = "alert-counters"  # a service name no other test uses: its series are new here
    assert (
        sample("leadflow_dead_letters_total", {"service": service, "topic": "t.leads.lifecycle"})
        is None
    )
    engine = create_engine(NOWHERE, application_name="unit")
    try:
        ConsumerRunner(
            service=service,
            subscriptions=[LEADS_LIFECYCLE, CRM_FEEDBACK],
            handler=_nothing,
            sessions=create_sessionmaker(engine),
            schema="router",
            kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix="t."),
            consumer=ConsumerSettings(),
        )
    finally:
        await engine.dispose()
    for topic in ("t.leads.lifecycle", "t.crm.feedback"):
        labels = {"service": service, "topic": topic}
        assert sample("leadflow_dead_letters_total", labels) == 0
        assert sample("leadflow_consumer_rewound_records_total", labels) == 0


async def test_sync_s_dead_letters_are_at_zero_per_destination_before_any(tmp_path: Path) -> None:
    destinations = tmp_path / "destinations.yaml"
    destinations.write_text(
        "destinations:\n  alert-counters-crm:\n"
        "    url: http://127.0.0.1:9/hooks\n    events: [decisions]\n    secret_env: CRM_SECRET\n"
    )
    loaded = load_destinations(destinations, {"CRM_SECRET": SECRET})
    labels = {"destination": "alert-counters-crm"}
    assert sample("leadflow_sync_dead_lettered_total", labels) is None
    engine = create_engine(NOWHERE, application_name="unit")
    try:
        Deliveries(
            loaded, sessions=create_sessionmaker(engine), settings=SyncSettings(database=NOWHERE)
        )
    finally:
        await engine.dispose()
    assert sample("leadflow_sync_dead_lettered_total", labels) == 0


async def _nothing(messages: Sequence[Message[BaseModel]], session: AsyncSession) -> list[Output]:
    raise AssertionError("not called")
