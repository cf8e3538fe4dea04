"""score's history keeps only what is needed, against the real PostgreSQL at the handler: under
the default rules an event's IP address and user agent are not stored; under rules with a
condition on the address it is stored truncated (/24, /48), while the rules read the full
address of the live event; a rescore under rules that start reading it later finds none in
the messages scored before; and the facts endpoint lists what is stored, offering no value of
an address."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import yaml
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.handler import ScoreHandler
from services.score.http import score_api
from services.score.rules_versions import pinned
from services.score.sweep import RescoreSweep
from shared.consumer import Message
from shared.contracts import EnrichedEvent, ScoreCommand
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.secret_hashes import secret_hash
from shared.service_api import serve_clients
from shared.settings import ApiClient, ApiSettings, DatabaseSettings
from shared.simulations import Simulations
from shared.topics import EVENTS_ENRICHED, SCORE_COMMANDS

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DEFAULT = load_rules(DEFAULT_RULES_FILE)
IP, IP6 = "84.17.52.103", "2001:db8:85a3:8d3:1319:8a2e:370:7348"
AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"


def reading_the_address(version: str = "test-ip") -> RuleSet:
    """The default rules and two on the visitor's address: the whole address (holds on the live
    event only) and its network (holds on the stored history too)."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = version
    document["rules"] += [
        {"id": "the-ceo-desk", "group": "intent", "points": 7, "reason": "from the CEO's desk",
         "when": {"field": "context.ip", "in": [IP, IP6]}},
        {"id": "office-network", "group": "intent", "points": 5, "reason": "from the office",
         "when": {"field": "context.ip", "regex": r"^(84\.17\.52\.|2001:db8:85a3:)"}},
    ]  # fmt: skip
    return RuleSet.model_validate(document)


def visit(lead: str, message_id: str, ip: str, minutes: int = 0) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": lead, "source": "website", "identified": False,
         "type": "page", "properties": {"path": "/pricing"},
         "context": {"ip": ip, "userAgent": AGENT, "userAgentData": {"mobile": False},
                     "locale": "en-US"},
         "timestamp": T0 + timedelta(minutes=minutes), "received_at": T0}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, minutes, lead.encode(), value)


def rescore(lead: str, version: str) -> Message[BaseModel]:
    command = ScoreCommand(command_id=f"rescore:{version}:{lead}", kind="rescore", lead_id=lead,
                           at=T0 + timedelta(hours=1))  # fmt: skip
    return Message(SCORE_COMMANDS, 0, 0, lead.encode(), command)


async def stored_facts(db: asyncpg.Connection, lead: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT facts::text FROM score.history WHERE lead_id = $1 ORDER BY seq", lead
    )
    return [orjson.loads(row["facts"]) for row in rows]


async def awarded(db: asyncpg.Connection, lead: str) -> dict[str, int]:
    rows = await db.fetch("SELECT rule_id, points FROM score.ledger WHERE lead_id = $1", lead)
    return {row["rule_id"]: row["points"] for row in rows}


def facts_api(sessions: async_sessionmaker[AsyncSession]) -> httpx.AsyncClient:
    """score's HTTP routes in this process, for a client with `rules:read`."""
    app = FastAPI()
    for router in score_api(sessions=sessions, rescore=RescoreSweep(under="rules").progress,
                            simulations=Simulations(schema="score", sessions=sessions),
                            simulate_budget_s=10):  # fmt: skip
        app.include_router(router)
    client = ApiClient(token_sha256=secret_hash("test-token"), scopes=["rules:read"])
    serve_clients(app, ApiSettings(clients={"editor": client}))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://score",
        headers={"Authorization": "Bearer test-token"},
    )


async def facts_seen(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await api.get("/v1/rules/facts")
    assert response.status_code == 200, response.text
    return {fact["field"]: fact for fact in response.json()["facts"]}


async def test_the_address_and_browser_are_stored_only_where_a_rule_reads_them_truncated(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)

    async def handle(rules: RuleSet, *messages: Message[BaseModel]) -> None:
        async with unit_of_work(sessions) as session:
            await ScoreHandler(pinned(rules))(messages, session)

    def network_identity(facts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k.startswith(("context.ip", "context.userAgent"))}
                for f in facts]  # fmt: skip

    try:
        async with facts_api(sessions) as api:
            # The default rules read neither: neither is stored; the rest of the call is.
            await handle(DEFAULT, *(visit(f"v-{n}", f"v-{n}-1", IP, n) for n in range(3)))
            for n in range(3):
                (facts,) = await stored_facts(db, f"v-{n}")
                assert network_identity([facts]) == [{}]
                assert facts["context.locale"] == "en-US"
                assert facts["page.path"] == "/pricing"
            assert await awarded(db, "v-0") == {"pricing-page": 15}
            seen = await facts_seen(api)
            assert {"context.locale", "page.path"} <= seen.keys()
            assert not [f for f in seen if f.startswith(("context.ip", "context.userAgent"))]

            # Rules that read the address: stored as its network (the browser, which no rule
            # reads, still not); the rules read the whole address of the live event.
            rules = reading_the_address()
            await handle(rules, visit("w-0", "w-0-1", IP), visit("w-1", "w-1-1", IP6),
                         visit("w-2", "w-2-1", "84.17.52.9"),
                         visit("w-3", "w-3-1", "not an address"))  # fmt: skip
            stored = {
                lead: network_identity(await stored_facts(db, lead)) for lead in ("w-0", "w-1")
            }
            assert stored == {"w-0": [{"context.ip": "84.17.52.0"}],
                              "w-1": [{"context.ip": "2001:db8:85a3::"}]}  # fmt: skip
            assert network_identity(await stored_facts(db, "w-3")) == [{}]
            assert await awarded(db, "w-0") == {"pricing-page": 15, "the-ceo-desk": 7,
                                                "office-network": 5}  # fmt: skip
            assert await awarded(db, "w-1") == {"pricing-page": 15, "the-ceo-desk": 7,
                                                "office-network": 5}  # fmt: skip
            assert await awarded(db, "w-2") == {"pricing-page": 15, "office-network": 5}
            assert IP not in str(await db.fetch("SELECT facts::text FROM score.history"))
            # The facts endpoint lists the stored address, and offers no value of it.
            seen = await facts_seen(api)
            assert seen["context.ip"]["messages"] == 3
            assert seen["context.ip"]["values"] == []
            assert "context.userAgent" not in seen

            # A rescore under such rules (a new version of them) replays the history: the
            # messages scored under the default rules have no address to read, and the rule on
            # the whole address holds on none of the stored ones (the network rule does).
            again = reading_the_address("test-ip-2")
            await handle(again, rescore("v-0", again.version), rescore("w-0", again.version))
            assert await awarded(db, "v-0") == {"pricing-page": 15}
            assert await awarded(db, "w-0") == {"pricing-page": 15, "office-network": 5}
    finally:
        await engine.dispose()
