"""What score writes per event against the real PostgreSQL: a lead's picture is written when it
changes and carried over as stored otherwise, and nulls are kept neither in pictures nor in the
history (the outputs that read a stored picture back are unchanged)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from pydantic import BaseModel, SecretStr

from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
from shared.consumer import Message, Output
from shared.contracts import CrmFeedback, EnrichedEvent, LeadProfile, LifecycleChanged
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = load_rules(DEFAULT_RULES_FILE)
VP = {"email": "ada@northwind.io", "title": "VP Sales", "seniority": "vp", "job_function": "sales"}
NORTHWIND = {"domain": "northwind.io", "employee_count": 850, "industry": "Software",
             "country": "US", "sources": {"employee_count": "file:companies.csv"}}  # fmt: skip


def event(message_id: str, minutes: int, *, version: int, **fields: Any) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": "lead-1", "lead_version": version,
         "source": "website", "identified": True, "type": "track", "event": "Webinar Attended",
         "timestamp": T0 + timedelta(minutes=minutes), "received_at": T0, "profile": VP,
         "firmographics": NORTHWIND, "consent": {"reasons": ["form"]}, **fields}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, minutes, b"lead-1", value)


async def picture(db: asyncpg.Connection) -> tuple[int, dict[str, Any]]:
    row = await db.fetchrow(
        "SELECT profile_version, profile::text AS p FROM score.leads WHERE lead_id = 'lead-1'"
    )
    assert row is not None
    return row["profile_version"], orjson.loads(row["p"])


async def test_a_picture_is_written_when_it_changes_and_carried_over_otherwise(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    handler = ScoreHandler(pinned(RULES))

    async def handle(messages: Sequence[Message[BaseModel]]) -> Sequence[Output]:
        async with unit_of_work(sessions) as session:
            return await handler(messages, session)

    try:
        await handle([event("m1", 0, version=1)])
        version, stored = await picture(db)
        assert version == 1
        assert stored["profile"] == {**VP, "free_mail": False, "disposable_email": False}
        assert stored["firmographics"]["sources"] == NORTHWIND["sources"]
        assert stored["consent"]["reasons"] == ["form"]
        assert None not in stored["facts"].values()
        assert stored["facts"]["profile.seniority"] == "vp"

        # The same picture (version and facts): the stored value stays as it is, whatever it
        # holds; the score moves on.
        await db.execute(
            "UPDATE score.leads SET profile = profile || '{\"kept\": true}' WHERE lead_id = 'lead-1'"
        )
        await handle([event("m2", 1, version=1, event="Content Downloaded")])
        assert (await picture(db))[1] == {**stored, "kept": True}
        assert await db.fetchval("SELECT behaviour FROM score.leads") == 30

        # A new picture is written whole (and the lifecycle output reads it back).
        new_title = {**VP, "title": "CEO", "seniority": "c-level"}
        await handle([event("m3", 2, version=2, profile=new_title)])
        version, stored = await picture(db)
        assert version == 2
        assert "kept" not in stored
        assert stored["profile"]["title"] == "CEO"
        assert "phone" not in stored["profile"]
        assert stored["facts"]["profile.seniority"] == "c-level"

        # The same version with other facts (not what enrich sends) is still taken.
        await handle([event("m4", 3, version=2, profile={**new_title, "country": "DE"})])
        assert (await picture(db))[1]["facts"]["profile.country"] == "DE"

        # Outputs without an event at hand read the stored picture: nulls come back as defaults.
        outputs = await handle(
            [Message(CRM_FEEDBACK, 0, 0, b"lead-1", CrmFeedback.model_validate(
                {"feedback_id": "fb-1", "lead_id": "lead-1", "outcome": "accepted",
                 "at": T0 + timedelta(hours=1)}))]
        )  # fmt: skip
        (change,) = [o.value for o in outputs if isinstance(o.value, LifecycleChanged)]
        assert change.to_stage == "sql"
        assert change.profile == LeadProfile.model_validate({**new_title, "country": "DE"})
        assert change.firmographics is not None
        assert change.firmographics.sources == NORTHWIND["sources"]
        assert change.consent.reasons == ["form"]
    finally:
        await engine.dispose()


async def test_history_keeps_no_null_facts(database_url: str, db: asyncpg.Connection) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    try:
        async with unit_of_work(sessions) as session:
            await ScoreHandler(pinned(RULES))(
                [event("m1", 0, version=1, type="page", event=None,
                       properties={"path": "/pricing", "title": None})],
                session,
            )  # fmt: skip
        facts = orjson.loads(await db.fetchval("SELECT facts::text FROM score.history"))
        assert facts["page.path"] == "/pricing"
        assert facts["profile.seniority"] == "vp"
        assert None not in facts.values()
        assert "event" not in facts
        assert "properties.title" not in facts
    finally:
        await engine.dispose()
