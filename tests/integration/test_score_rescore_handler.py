"""The score handler's rescore against the real PostgreSQL, batch by batch (the consumer runner
would hand it the same batches): a rescore in a batch that also scores the lead's events, with
the histories read up front or, after a flush, read again; and a lead scored under new rules
before its rescore keeps its old version until it is rescored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import yaml
from pydantic import BaseModel, SecretStr

from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
from shared.consumer import Message
from shared.contracts import EnrichedEvent, ScoreCommand
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import EVENTS_ENRICHED, SCORE_COMMANDS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LIVE = load_rules(DEFAULT_RULES_FILE)


def new_rules() -> RuleSet:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "test-new"
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = 35
    return RuleSet.model_validate(document)


def event(lead: str, message_id: str, minutes: int, **call: Any) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": lead, "source": "website", "identified": True,
         "timestamp": T0 + timedelta(minutes=minutes), "received_at": T0, "type": "track",
         "profile": {"email": f"{lead}@northwind.io", "seniority": "manager"}, **call}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, minutes, lead.encode(), value)


def rescore(lead: str) -> Message[BaseModel]:
    command = ScoreCommand(command_id=f"rescore:test-new:{lead}", kind="rescore", lead_id=lead,
                           at=T0 + timedelta(hours=1))  # fmt: skip
    return Message(SCORE_COMMANDS, 0, 0, lead.encode(), command)


def merge(survivor: str, merged: str) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": f"merge-{merged}", "lead_id": survivor, "source": "website",
         "identified": True, "timestamp": T0, "received_at": T0, "kind": "merged",
         "merge": {"merge_id": f"mg-{merged}", "surviving_lead_id": survivor,
                   "merged_lead_ids": [merged], "reason": "same email"}}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 1, 0, survivor.encode(), value)


async def test_rescore_in_a_batch_with_the_leads_own_events(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)

    async def handle(handler: ScoreHandler, messages: Sequence[Message[BaseModel]]) -> None:
        async with unit_of_work(sessions) as session:
            await handler(messages, session)

    webinar = {"event": "Webinar Attended"}
    pricing = {"type": "page", "properties": {"path": "/pricing"}}  # 15 points, intent
    try:
        # under the live rules: a webinar each (20 points)
        await handle(ScoreHandler(pinned(LIVE)), [event("x", "x1", 0, **webinar),
                                          event("y", "y1", 0, **webinar)])  # fmt: skip
        rules = new_rules()
        handler = ScoreHandler(pinned(rules))
        # new rules: an event before the rescore does not make the lead "on the new rules"
        await handle(handler, [event("x", "x2", 10, **pricing)])
        row = await db.fetchrow("SELECT rule_version, behaviour FROM score.leads WHERE lead_id='x'")
        assert (row["rule_version"], row["behaviour"]) == (LIVE.version, 20 + 15)
        # x: events around its rescore in one batch (histories read up front)
        await handle(handler, [event("x", "x3", 20, **pricing), rescore("x"),
                               event("x", "x4", 30, **pricing)])  # fmt: skip
        # y: a merge elsewhere in the batch writes first; y's history is read again
        await handle(handler, [event("y", "y2", 20, **pricing),
                               merge("z", "w"), rescore("y")])  # fmt: skip
    finally:
        await engine.dispose()

    for lead, behaviour in (("x", 35 + 3 * 15), ("y", 35 + 15)):
        row = await db.fetchrow(
            "SELECT rule_version, behaviour FROM score.leads WHERE lead_id = $1", lead
        )
        assert (row["rule_version"], row["behaviour"]) == ("test-new", behaviour), lead
        ledger = await db.fetch(
            "SELECT message_id, rule_id, points, rule_version FROM score.ledger "
            "WHERE lead_id = $1 AND kind = 'behaviour' ORDER BY event_time",
            lead,
        )
        assert {r["rule_version"] for r in ledger} == {"test-new"}, lead
        assert sum(r["points"] for r in ledger) == behaviour, lead
        assert (ledger[0]["rule_id"], ledger[0]["points"]) == ("webinar-attended", 35)
