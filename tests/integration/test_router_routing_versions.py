"""The routing as versioned configuration, on the real PostgreSQL (and, end to end, the real
broker): a publication is followed by the handler at its next batch and never within a batch,
every decision names the version that made it and stores the change it answered, a batch with
nothing published fails, the SLA timer reads the live routing per round, the routing file is
adopted at start (a changed file wins, an unchanged one leaves what people published), the
migration goes down and up again, an operator lists the versions and rolls back from the
command line, and a rep put out of office through the API gets no more leads, without a
restart.

In process, each test builds its own `routing_versions()` store: a process keeps one, and each
test has a database of its own whose version numbers start again at 1."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from alembic import command
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.__main__ import SERVICE
from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.routing_config import RoutingConfig
from services.router.routing_versions import NoLiveRouting, routing_versions
from services.router.sla_timers import request_sla_checks
from shared.codec import encode
from shared.commands import CommandSender
from shared.config_versions import VersionedConfig
from shared.consumer import Message, Output
from shared.contracts import LifecycleChanged, RoutingDecision, Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.migrations import alembic_config
from shared.resources import Resources
from shared.settings import DatabaseSettings, KafkaSettings
from shared.topics import LEADS_LIFECYCLE, ROUTING_SDR
from tests.fixtures.infra import REPO
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.routing import TWO_TEAMS_YAML, decisions_in, release_settled
from tests.unit.builders import lifecycle_change, profile

ROUTING_FILE = TWO_TEAMS_YAML


def routing_document(**changes: Any) -> dict[str, Any]:
    """The routing file's document, with top-level fields replaced."""
    document: dict[str, Any] = yaml.safe_load(ROUTING_FILE)
    return {**document, **changes}


def without_rep_a() -> dict[str, Any]:
    document = routing_document()
    document["teams"][0]["reps"][0]["active"] = False
    return document


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def publish(
    sessions: async_sessionmaker[AsyncSession],
    routing: VersionedConfig[RoutingConfig],
    document: dict[str, Any],
) -> str:
    """Save and publish `document`, as an editor would; returns its version."""
    async with unit_of_work(sessions) as session:
        saved = await routing.save(session, document=document, author="ada", note="test")
        await routing.publish(session, saved.version, by="ada")
    return saved.version


def mql(lead: str, *, country: str = "FR") -> LifecycleChanged:
    now = datetime.now(UTC)
    return lifecycle_change(
        transition_id=f"{lead}:mql:m",
        lead_id=lead,
        at=now,  # live: a change older than the backfill horizon is history
        received_at=now,
        profile=profile(email=f"{lead}@northwind-logistics.com", country=country),
    )


def nurture(lead: str) -> LifecycleChanged:
    return mql(lead).model_copy(
        update={
            "transition_id": f"{lead}:lead:m",
            "from_stage": Stage.KNOWN,
            "to_stage": Stage.LEAD,
        }
    )


def handler_of(routing: Any) -> RouterHandler:
    return RouterHandler(
        routing, sla_recheck=timedelta(minutes=5), backfill_horizon=timedelta(hours=72)
    )


async def handle(
    sessions: async_sessionmaker[AsyncSession], handler: RouterHandler, *changes: LifecycleChanged
) -> list[RoutingDecision]:
    """One batch, in one transaction, as the runner hands it over."""
    messages: list[Message[BaseModel]] = [
        Message(topic=LEADS_LIFECYCLE, partition=0, offset=n, key=None, value=change)
        for n, change in enumerate(changes)
    ]
    async with unit_of_work(sessions) as session:
        outputs = await handler(messages, session)
    return sent(outputs)


def sent(outputs: Sequence[Output]) -> list[RoutingDecision]:
    """The decisions among a batch's outputs."""
    return decisions_in(outputs)


def owners(decisions: list[RoutingDecision]) -> list[tuple[str | None, str | None]]:
    return [(d.owner.id if d.owner else d.queue, d.routing_version) for d in decisions]


# ---- the handler follows publications ----------------------------------------------------------


async def test_a_publication_is_followed_at_the_next_batch_and_each_decision_names_its_version(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    routing = routing_versions()
    handler = handler_of(routing)
    assert await publish(sessions, routing, routing_document()) == "1"

    lead_1 = mql("lead-1")
    first = await handle(sessions, handler, lead_1, nurture("lead-2"))
    assert owners(first) == [("rep-a", "1")]  # the nurture decision settles first
    assert owners(sent(await release_settled(handler, sessions))) == [(None, "1")]

    assert await publish(sessions, routing, without_rep_a()) == "2"
    second = await handle(sessions, handler, mql("lead-3"))
    assert owners(second) == [("rep-b", "2")], "rep-a (weight 3) would have had it under 1"

    rows = await db.fetch(
        "SELECT lead_id, routing_version, change, payload FROM router.decisions ORDER BY lead_id"
    )
    assert [(r["lead_id"], r["routing_version"]) for r in rows] == [
        ("lead-1", "1"),
        ("lead-2", "1"),
        ("lead-3", "2"),
    ]
    # the change each first decision answered is stored as it came, for a simulation to replay
    assert LifecycleChanged.model_validate_json(rows[0]["change"]) == lead_1
    assert LifecycleChanged.model_validate_json(rows[1]["change"]).to_stage == Stage.LEAD
    assert RoutingDecision.model_validate_json(rows[2]["payload"]).routing_version == "2"


class PublishesRightAfterTheBatchReads:
    """A live source that, once the batch has read the live version, publishes another one
    (committed at once, by another transaction): a second read in the batch would see it."""

    def __init__(
        self,
        routing: VersionedConfig[RoutingConfig],
        sessions: async_sessionmaker[AsyncSession],
        then: dict[str, Any],
    ) -> None:
        self.routing, self.sessions, self.then = routing, sessions, then
        self.reads = 0

    async def live(self, session: AsyncSession) -> tuple[str, RoutingConfig] | None:
        self.reads += 1
        live = await self.routing.live(session)
        if self.reads == 1:
            await publish(self.sessions, self.routing, self.then)
        return live


async def test_a_batch_reads_the_live_routing_once_and_a_publication_meanwhile_waits_for_the_next(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    routing = routing_versions()
    await publish(sessions, routing, routing_document())
    emea_to_rep_z = routing_document(
        territories=[{"name": "emea", "team": "sdr-other", "when": {"regions": ["EMEA"]}}]
    )
    source = PublishesRightAfterTheBatchReads(routing, sessions, then=emea_to_rep_z)
    handler = handler_of(source)

    during = await handle(
        sessions, handler, mql("lead-1"), nurture("lead-2"), mql("lead-3"), mql("lead-4")
    )
    assert source.reads == 1
    # weights 3:1, one instant: a, a, then b (a tie goes to whoever waited longest)
    assert owners(during) == [("rep-a", "1"), ("rep-a", "1"), ("rep-b", "1")]

    after = await handle(sessions, handler, mql("lead-5"))
    assert source.reads == 2
    assert owners(after) == [("rep-z", "2")]
    # released later, the nurture decision keeps the version it was decided under
    assert owners(sent(await release_settled(handler, sessions))) == [(None, "1")]


async def test_a_batch_with_no_routing_published_fails_and_routes_nothing(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    handler = handler_of(routing_versions())

    with pytest.raises(NoLiveRouting, match="no routing version is published"):
        await handle(sessions, handler, mql("lead-1"))
    assert await db.fetchval("SELECT count(*) FROM router.decisions") == 0
    assert await db.fetchval("SELECT count(*) FROM router.suppressions") == 0


async def test_the_sla_timer_reads_the_live_routing_each_round(
    sessions: async_sessionmaker[AsyncSession], database_url: str, tmp_path: Path
) -> None:
    """How soon a round looks again depends on the shortest SLA window (or nurture settle time)
    live in that round."""
    routing = routing_versions()
    slow_settle = {"default": "general-nurture", "settle": "1h"}
    await publish(sessions, routing, routing_document(nurture=slow_settle))
    settings = RouterSettings(
        database=DatabaseSettings(url=SecretStr(database_url)), sla_recheck_s=3600
    )
    commands = CommandSender(KafkaSettings(), client_id="t")  # nothing due: nothing sent

    async def round_horizon() -> timedelta:
        done = await request_sla_checks(
            sessions=sessions, commands=commands, settings=settings, routing=routing
        )
        return done.horizon

    assert await round_horizon() == timedelta(hours=1)  # the recheck: shorter than 4 h
    await publish(
        sessions,
        routing,
        routing_document(sla={"default": "4h", "by_grade": {"A": "5m"}}, nurture=slow_settle),
    )
    assert await round_horizon() == timedelta(minutes=5)
    await publish(sessions, routing, routing_document())  # nurture settles in 30 s by default
    assert await round_horizon() == timedelta(seconds=30)
    await commands.close()


# ---- the routing file at start -----------------------------------------------------------------


async def start_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str, routing_file: Path
) -> None:
    """The router's start-up hook as the shell runs it, then its shutdown (nothing consumed or
    served in between)."""
    settings = RouterSettings(
        database=DatabaseSettings(url=SecretStr(database_url)), routing_file=routing_file
    )
    commands = CommandSender(settings.kafka, client_id="t")
    try:
        async with SERVICE.start(Resources(settings, sessions, commands)):
            pass
    finally:
        await commands.close()


async def live_and_versions(db: asyncpg.Connection) -> tuple[str, list[tuple[str, str | None]]]:
    live = await db.fetchval("SELECT version FROM router.config_live WHERE kind = 'routing'")
    rows = await db.fetch(
        "SELECT version, parent FROM router.config_versions WHERE kind = 'routing' ORDER BY seq"
    )
    return live, [(r["version"], r["parent"]) for r in rows]


async def test_at_start_a_changed_routing_file_wins_and_an_unchanged_one_leaves_what_was_published(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="services.router.routing_versions")
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_FILE)

    await start_once(sessions, database_url, path)
    assert await live_and_versions(db) == ("1", [("1", None)])
    assert f"routing file {path} is new: imported and published as version 1" in caplog.text

    # someone publishes a version through the API
    await publish(sessions, routing_versions(), without_rep_a())
    caplog.clear()
    await start_once(sessions, database_url, path)  # a restart, the file unchanged
    assert await live_and_versions(db) == ("2", [("1", None), ("2", None)])
    assert "unchanged (imported before as version 1); live routing: version 2" in caplog.text

    path.write_text(ROUTING_FILE.replace("version: two-reps-1", "version: two-reps-2"))
    await start_once(sessions, database_url, path)  # a deploy with a changed file
    assert await live_and_versions(db) == ("3", [("1", None), ("2", None), ("3", "2")])
    note, author, document = await db.fetchrow(
        "SELECT note, author, document FROM router.config_versions WHERE version = '3'"
    )
    assert author == "routing file"
    assert note.startswith("imported from routing.yaml (version label two-reps-2)")
    assert json.loads(document)["version"] == "3", "a stored version is stamped with its id"
    published_by = await db.fetch(
        "SELECT version, published_by FROM router.config_publications ORDER BY seq"
    )
    assert [tuple(r) for r in published_by] == [
        ("1", "routing file"),
        ("2", "ada"),
        ("3", "routing file"),
    ]


async def test_a_bad_routing_file_stops_the_start_and_publishes_nothing(
    db: asyncpg.Connection,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_FILE.replace("weight: 3", "weight: 0"))

    with pytest.raises(ValueError, match=r"routing.yaml: line 7: teams.0.reps.0.weight: "):
        await start_once(sessions, database_url, path)
    assert await db.fetchval("SELECT count(*) FROM router.config_versions") == 0


# ---- the migration -----------------------------------------------------------------------------


async def test_the_migration_downgrades_to_the_routing_file_alone_and_upgrades_again(
    db: asyncpg.Connection, database_url: str
) -> None:
    config = alembic_config(
        migrations_dir=REPO / "services" / "router" / "migrations",
        schema="router",
        database_url=database_url,
    )

    async def router_tables_and_decision_columns() -> tuple[set[str], set[str]]:
        tables = await db.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'router'"
        )
        columns = await db.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'router' AND table_name = 'decisions'"
        )
        return {r[0] for r in tables}, {r[0] for r in columns}

    tables, columns = await router_tables_and_decision_columns()
    added = {"config_versions", "config_kinds", "config_live", "config_publications",
             "config_imports", "simulations"}  # fmt: skip
    assert added <= tables
    assert {"routing_version", "change"} <= columns

    await asyncio.to_thread(command.downgrade, config, "0004")
    tables, columns = await router_tables_and_decision_columns()
    assert not added & tables
    assert not {"routing_version", "change"} & columns

    await asyncio.to_thread(command.upgrade, config, "head")
    tables, columns = await router_tables_and_decision_columns()
    assert added <= tables
    assert {"routing_version", "change"} <= columns


# ---- the operator's commands -------------------------------------------------------------------


async def router_command(database_url: str, *args: str) -> tuple[int, str, str]:
    """`python -m services.router <args>` against the test's database: exit code, out, err."""
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.router", *args,
        env={**os.environ, "LEADFLOW_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await command.communicate()
    assert command.returncode is not None
    return command.returncode, out.decode(), err.decode()


async def test_an_operator_lists_the_versions_and_rolls_back_from_the_command_line(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    routing = routing_versions()
    await publish(sessions, routing, routing_document())
    await publish(sessions, routing, without_rep_a())

    code, out, err = await router_command(database_url, "versions", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["live"] == "2"
    assert [v["version"] for v in listed["versions"]] == ["2", "1"]

    code, out, err = await router_command(
        database_url, "publish", "1", "--note", "rep-a is back", "--by", "ops"
    )
    assert code == 0, err
    assert out.startswith("routing version 1 is live (was 2)")
    assert await db.fetchval("SELECT version FROM router.config_live") == "1"
    rolled_back = await db.fetchrow(
        "SELECT previous, published_by, note FROM router.config_publications ORDER BY seq DESC"
    )
    assert tuple(rolled_back) == ("2", "ops", "rep-a is back")

    code, out, err = await router_command(database_url, "versions")
    assert code == 0, err
    assert re.search(r"^1 \(live\)\s", out, re.MULTILINE), out

    code, _, err = await router_command(database_url, "publish", "9")
    assert code == 1
    assert err.strip() == "error: routing: no version '9'"
    assert await db.fetchval("SELECT version FROM router.config_live") == "1"


# ---- end to end: a rep out of office, published through the API --------------------------------


async def test_a_rep_put_out_of_office_through_the_api_gets_no_more_leads_without_a_restart(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """rep-a (weight 3 of 4) takes the territory's first MQLs; once a version with rep-a out of
    office today is published, the running router sends the next MQL of the territory to rep-b."""
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING_FILE)
    pipeline.addresses.service_env["router"] = {"LEADFLOW_ROUTER_ROUTING_FILE": str(path)}
    await pipeline.start("router")
    topic = ROUTING_SDR.full_name(pipeline.prefix)
    run = uuid.uuid4().hex[:6]
    first, second = f"lead-1-{run}", f"lead-2-{run}"

    pipeline.produce_raw(LEADS_LIFECYCLE, encode(mql(first)), key=first.encode())
    records = await pipeline.read(topic, until=lambda rs: len(rs) >= 1)
    (decision,) = [r.json() for r in records]
    assert (decision["owner"]["id"], decision["routing_version"]) == ("rep-a", "1")

    today = datetime.now(UTC).date()
    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("router"),
        headers=pipeline.addresses.api_headers,
        timeout=10,
    ) as client:
        live = (await client.get("/v1/routing")).json()["live"]
        assert live == "1"
        before = {r["id"]: r["away_today"] for r in (await client.get("/v1/routing/reps")).json()}
        assert before == {"rep-a": False, "rep-b": False, "rep-z": False}
        changed = await client.post(
            "/v1/routing/reps/rep-a",
            json={
                "out_of_office": [
                    {
                        "from": (today - timedelta(days=1)).isoformat(),
                        "until": (today + timedelta(days=1)).isoformat(),
                    }
                ],
                "note": "off sick",
                "by": "ada",
                "expected_live": live,
            },
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["publication"]["version"] == "2"
        after = {r["id"]: r["away_today"] for r in (await client.get("/v1/routing/reps")).json()}
        assert after == {"rep-a": True, "rep-b": False, "rep-z": False}

    pipeline.produce_raw(LEADS_LIFECYCLE, encode(mql(second)), key=second.encode())
    records = await pipeline.read(topic, until=lambda rs: len(rs) >= 2)
    decision = next(r.json() for r in records if r.json()["lead_id"] == second)
    assert (decision["owner"]["id"], decision["routing_version"]) == ("rep-b", "2")
    history = await pipeline.routing_history(second)
    assert history["decisions"][0]["routing_version"] == "2"
