"""A lead's first touch against the real PostgreSQL: score keeps the first value of each origin
fact per lead (`score.leads.first_touch`) whether or not a model is published, every stage
change carries it (`LifecycleChanged.first_touch`), a merge fills only what the survivor lacks,
and migration 0008 backfills it from the stored history."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from alembic import command
from pydantic import BaseModel, SecretStr

from services.score.engine.first_touch import first_touch_of
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
from shared.consumer import Message, Output
from shared.contracts import CrmFeedback, EnrichedEvent, FirstTouch, LifecycleChanged
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.migrations import alembic_config
from shared.settings import DatabaseSettings
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED
from tests.fixtures.infra import REPO

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RULES = load_rules(DEFAULT_RULES_FILE)
VP = {"email": "ada@northwind.io", "title": "VP Sales", "seniority": "vp", "job_function": "sales"}


def event(lead_id: str, message_id: str, minutes: int, **fields: Any) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": lead_id, "lead_version": 1, "source": "website",
         "identified": True, "type": "track", "event": "Webinar Attended",
         "timestamp": T0 + timedelta(minutes=minutes), "received_at": T0, "profile": VP,
         **fields}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, minutes, lead_id.encode(), value)


def campaign(name: str, source: str, medium: str) -> dict[str, Any]:
    return {"campaign": {"name": name, "source": source, "medium": medium}}


def accepted(lead_id: str, feedback_id: str) -> Message[BaseModel]:
    value = CrmFeedback.model_validate(
        {"feedback_id": feedback_id, "lead_id": lead_id, "outcome": "accepted",
         "at": T0 + timedelta(hours=1)}
    )  # fmt: skip
    return Message(CRM_FEEDBACK, 0, 0, lead_id.encode(), value)


def changes(outputs: Sequence[Output]) -> list[LifecycleChanged]:
    return [o.value for o in outputs if isinstance(o.value, LifecycleChanged)]


async def stored_touch(db: asyncpg.Connection, lead_id: str) -> dict[str, str] | None:
    text = await db.fetchval(
        "SELECT first_touch::text FROM score.leads WHERE lead_id = $1", lead_id
    )
    return None if text is None else orjson.loads(text)


async def test_every_stage_change_carries_the_first_touch_of_the_leads_first_event(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    handler = ScoreHandler(pinned(RULES))

    async def handle(*messages: Message[BaseModel]) -> list[LifecycleChanged]:
        async with unit_of_work(sessions) as session:
            return changes(await handler(messages, session))

    spring = FirstTouch(source="website", campaign="spring launch", campaign_source="linkedin",
                        campaign_medium="paid-social")  # fmt: skip
    try:
        # The first event: its campaign, normalised, is the lead's first touch from then on.
        (known,) = await handle(
            event("lead-1", "m1", 0, type="page", event=None, properties={"path": "/pricing"},
                  source="Website", context=campaign("  Spring \t Launch ", "LinkedIn",
                                                     "Paid-Social"))
        )  # fmt: skip
        assert known.first_touch == spring

        # Later events with other campaigns and sources change none of it; the import list
        # the lead did not have yet is learned, the first one only.
        (mql,) = await handle(
            event("lead-1", "m2", 1, source="api",
                  context={**campaign("Autumn Webinar", "newsletter", "email"),
                           "import": {"list": "Trade  Show 2026"}}),
            event("lead-1", "m3", 2, event="Demo Requested", source="api",
                  context={**campaign("Winter", "google", "cpc"), "import": {"list": "other"}}),
        )  # fmt: skip
        assert mql.to_stage == "mql"
        first_touch = spring.model_copy(update={"import_list": "trade show 2026"})
        assert mql.first_touch == first_touch

        # A change without an event at hand (a CRM's outcome) carries the kept first touch.
        (sql,) = await handle(accepted("lead-1", "fb-1"))
        assert sql.to_stage == "sql"
        assert sql.first_touch == first_touch

        assert await stored_touch(db, "lead-1") == {
            "source": "website", "context.campaign.name": "spring launch",
            "context.campaign.source": "linkedin", "context.campaign.medium": "paid-social",
            "context.import.list": "trade show 2026",
        }  # fmt: skip
        # No model is published: the learning's activity was never kept, the first touch was.
        row = await db.fetchrow(
            "SELECT activity, model_version FROM score.leads WHERE lead_id = 'lead-1'"
        )
        assert row is not None
        assert tuple(row) == (None, None)
    finally:
        await engine.dispose()


async def test_a_survivor_keeps_its_first_touch_and_takes_what_it_lacks_from_the_merged_lead(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    handler = ScoreHandler(pinned(RULES))

    async def handle(*messages: Message[BaseModel]) -> list[LifecycleChanged]:
        async with unit_of_work(sessions) as session:
            return changes(await handler(messages, session))

    merge = {"merge_id": "mg-1", "surviving_lead_id": "lead-a", "merged_lead_ids": ["lead-b"],
             "reason": "same email"}  # fmt: skip
    try:
        await handle(
            event("lead-a", "a1", 0),
            event("lead-b", "b1", 1, event="Trial Started", source="api",
                  context={**campaign("Partner Webinar", "acme", "partner"),
                           "import": {"list": "Partners"}}),
        )  # fmt: skip
        await handle(event("lead-a", "merge-1", 2, kind="merged", type=None, event=None,
                           merge=merge))  # fmt: skip
        (sql,) = await handle(accepted("lead-a", "fb-a"))
        assert sql.first_touch == FirstTouch(
            source="website", import_list="partners", campaign="partner webinar",
            campaign_source="acme", campaign_medium="partner",
        )  # fmt: skip

        # An unmerge gives each side the first touch of its own messages again.
        await handle(event("lead-a", "unmerge-1", 3, kind="unmerged", type=None, event=None,
                           merge=merge))  # fmt: skip
        assert await stored_touch(db, "lead-a") == {"source": "website"}
        assert await stored_touch(db, "lead-b") == {
            "source": "api", "context.campaign.name": "partner webinar",
            "context.campaign.source": "acme", "context.campaign.medium": "partner",
            "context.import.list": "partners",
        }  # fmt: skip
    finally:
        await engine.dispose()


async def test_migration_0008_backfills_the_first_touch_from_the_history_in_scoring_order(
    database_url: str, db: asyncpg.Connection
) -> None:
    config = alembic_config(
        migrations_dir=REPO / "services" / "score" / "migrations",
        schema="score",
        database_url=database_url,
    )
    await asyncio.to_thread(command.downgrade, config, "0007")
    # lead-1's messages in the order they were scored (their `at` in another order)
    histories: dict[str, list[dict[str, Any]]] = {
        "lead-1": [
            {"type": "page", "context.campaign.source": 42},
            {"source": "Website", "context.campaign.name": "  Spring \t Launch ",
             "context.campaign.source": "   "},
            {"source": "api", "context.campaign.name": "autumn",
             "context.import.list": "Trade  Show", "context.campaign.source": "LinkedIn"},
            {"context.campaign.medium": "PAID-" + "X" * 100, "context.import.list": "other"},
            {"context.campaign.medium": "email"},
        ],
        "lead-2": [{"type": "track", "event": "Demo Requested"}, {"source": ""}],
        "lead-3": [],
    }  # fmt: skip
    for lead_id, messages in histories.items():
        await db.execute(
            "INSERT INTO score.leads (lead_id, stage, fit, behaviour) VALUES ($1, 'known', 0, 0)",
            lead_id,
        )
        for n, facts in enumerate(messages):
            await db.execute(
                "INSERT INTO score.history (lead_id, message_id, at, behaviour, facts) "
                "VALUES ($1, $2, $3, true, $4::jsonb)",
                lead_id,
                f"m{n}",
                T0 - timedelta(minutes=n),
                orjson.dumps(facts).decode(),
            )

    await asyncio.to_thread(command.upgrade, config, "head")

    assert await stored_touch(db, "lead-1") == {
        "source": "website", "context.campaign.name": "spring launch",
        "context.campaign.source": "linkedin", "context.campaign.medium": "paid-" + "x" * 75,
        "context.import.list": "trade show",
    }  # fmt: skip
    for lead_id, messages in histories.items():  # as score keeps it live
        assert await stored_touch(db, lead_id) == (first_touch_of(messages) or None)
