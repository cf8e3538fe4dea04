"""Rule changes through score's HTTP endpoints and the rescore sweep, on the real broker and
PostgreSQL: a draft simulated on stored history in the background (nothing written), a bad one
refused with its line or field, published without a restart, a stale publish refused, a
rollback; and the sweep's progress and queries (index reads only)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from services.score import repository
from services.score.config import ScoreSettings
from services.score.engine.ruleset import DEFAULT_RULES_FILE
from services.score.rules_versions import RULES
from services.score.sweep import POLL_S, RescoreSweep
from shared.commands import CommandSender
from shared.db import create_engine, create_sessionmaker, driver_connection, unit_of_work
from shared.settings import DatabaseSettings, KafkaSettings
from shared.topics import EVENTS_ENRICHED, LEADS_SCORED, SCORE_COMMANDS
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.integration.test_score_lifecycle import enriched, of_lead, stages

LIVE = yaml.safe_load(DEFAULT_RULES_FILE.read_text())


def candidate_yaml(live_yaml: str, *, webinar: int = 35, demo: int = 5) -> str:
    """The live rules as the API gives them, with webinars worth more and demos less."""
    document = yaml.safe_load(live_yaml)
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = webinar
        if rule["id"] == "demo-request":
            rule["points"] = demo
    return yaml.safe_dump(document, sort_keys=False)


async def simulated(client: httpx.AsyncClient, draft: dict[str, Any]) -> dict[str, Any]:
    """Start a simulation of `draft` and wait for its result."""
    started = await client.post("/v1/rules/simulations", json=draft)
    assert started.status_code == 202, started.text
    simulation_id = started.json()["id"]

    async def state() -> dict[str, Any]:
        return dict((await client.get(f"/v1/rules/simulations/{simulation_id}")).json())

    done = await eventually(state, "the simulation done", until=lambda s: s["status"] != "running")
    assert done["status"] == "done", done
    assert done["progress"]["done"] == done["progress"]["total"]
    return dict(done["result"])


async def scored_under(pipeline: Pipeline, lead: str, event: str) -> dict[str, Any]:
    """Send `lead` an event; its score as `leads.scored` reports it."""
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, f"{lead}-1", event=event),
                         key=lead.encode())  # fmt: skip
    records = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix), until=lambda rs: bool(of_lead(lead)(rs))
    )
    return dict(of_lead(lead)(records)[0])


async def test_rules_are_simulated_published_and_rolled_back_through_the_api_without_a_restart(
    pipeline: Pipeline, db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    await pipeline.start("score")
    run = uuid.uuid4().hex[:8]
    webinar, demo = f"lead-w-{run}", f"lead-d-{run}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(webinar, "w1", event="Webinar Attended"),
                         key=webinar.encode())  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(demo, "d1", event="Demo Requested"),
                         key=demo.encode())  # fmt: skip
    assert await stages(pipeline, webinar, 1) == [("anonymous", "lead")]
    assert await stages(pipeline, demo, 1) == [("anonymous", "mql")]
    ledger_before = await db.fetchval("SELECT count(*) FROM score.ledger")

    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("score"),
        headers=pipeline.addresses.api_headers,
        timeout=30,
    ) as client:
        # the rules file was adopted at start as version 1, the live one
        overview = (await client.get("/v1/rules")).json()
        assert overview["live"] == "1"
        assert [v["author"] for v in overview["versions"]] == ["rules file"]
        live = (await client.get("/v1/rules/versions/live")).json()
        assert (live["version"], live["document"]["version"]) == ("1", "1")
        draft = candidate_yaml(live["yaml"])

        # a simulation on the stored history, in the background
        report = await simulated(client, {"yaml": draft, "by": "ada@lumenboard.io"})
        assert (report["live_version"], report["candidate_version"]) == ("1", "draft")
        assert (report["leads"], report["scores_changed"], report["stage_changes"]) == (2, 2, 2)
        assert [c["lead_id"] for c in report["becoming_mql"]] == [webinar]
        assert [c["lead_id"] for c in report["dropping_below_mql"]] == [demo]
        assert (report["becoming_ids"], report["dropping_ids"]) == ([webinar], [demo])
        became = report["becoming_mql"][0]
        assert (became["before"]["behaviour"], became["after"]["behaviour"]) == (20, 35)

        # bad drafts: every problem with its line (YAML) or dotted field (a form's document)
        bad = draft.replace("points: 35", "points: lots")
        refused = await client.post("/v1/rules/simulations", json={"yaml": bad})
        as_document = yaml.safe_load(draft)
        as_document["rules"][0]["points"] = 5000
        refused_form = await client.post("/v1/rules/versions", json={"document": as_document})
        not_yaml = await client.post("/v1/rules/check", json={"yaml": "rules: [\n  - {id: x\n"})
        not_json = await client.post("/v1/rules/check", content=b"\xff\xfe\x00")
        too_big = await client.post("/v1/rules/check", content=b"#" * 2_000_001)

        # published with a note: every replica scores with it from its next batch
        saved = await client.post(
            "/v1/rules/versions",
            json={"yaml": draft, "parent": "1", "note": "webinars matter more",
                  "by": "ada@lumenboard.io", "publish": True},
        )  # fmt: skip
        # another editor who also started from version 1 is refused, not silently applied
        stale = await client.post(
            "/v1/rules/versions",
            json={"yaml": candidate_yaml(live["yaml"], webinar=50), "parent": "1",
                  "note": "mine", "by": "grace@lumenboard.io", "publish": True},
        )  # fmt: skip
        after_publish = await scored_under(pipeline, f"lead-n-{run}", "Webinar Attended")

        # a rollback is publishing the earlier version
        rolled_back = await client.post(
            "/v1/rules/versions/1/publish",
            json={"note": "back to the file", "expected_live": "2", "by": "ada@lumenboard.io"},
        )
        after_rollback = await scored_under(pipeline, f"lead-r-{run}", "Webinar Attended")
        history = (await client.get("/v1/rules")).json()

    assert refused.status_code == 400
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "points: lots" in text)
    assert refused.json()["error"].startswith(f"draft: line {line}: rules.")
    assert ".points: Input should be a valid integer" in refused.json()["error"]
    assert refused_form.status_code == 400
    assert refused_form.json()["error"].startswith("draft: rules.0.points: ")
    assert not_yaml.status_code == 400
    assert not_yaml.json()["error"].startswith("draft: ")
    assert not_json.status_code == 400
    assert too_big.status_code == 413
    assert await db.fetchval("SELECT count(*) FROM score.ledger") >= ledger_before

    assert saved.status_code == 201, saved.text
    assert saved.json()["version"]["version"] == "2"
    assert saved.json()["version"]["author"] == "ada@lumenboard.io via local-stack"
    assert saved.json()["publication"]["previous"] == "1"
    assert stale.status_code == 409
    assert (
        "version 2 was published since this draft started from version 1" in (stale.json()["error"])
    )
    assert (after_publish["rule_version"], after_publish["score"]["behaviour"]) == ("2", 35)

    assert rolled_back.status_code == 200, rolled_back.text
    assert (after_rollback["rule_version"], after_rollback["score"]["behaviour"]) == ("1", 20)
    assert [(p["version"], p["previous"]) for p in history["publications"]] == [
        ("1", "2"), ("2", "1"), ("1", None)
    ]  # fmt: skip
    assert history["live"] == "1"
    # the refused draft was never saved: versions 1 and 2 only
    assert [v["version"] for v in history["versions"]] == ["2", "1"]

    # the CLI simulates a file against the live rules, and says the same
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(draft)
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.score", "simulate", str(candidate),
        env={**os.environ, "LEADFLOW_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    printed = out.decode()
    assert "rules 1 -> candidate.yaml:" in printed
    # leads named as people know them: the email, with the lead id
    assert re.search(rf"^    \S+@\S+ <{webinar}> \(lead\) ", printed, re.MULTILINE), printed
    assert re.search(rf"^    \S+@\S+ <{demo}> ", printed, re.MULTILINE), printed


async def test_the_rescore_sweep_asks_batch_after_batch_and_counts_what_is_done(
    pipeline: Pipeline, db: asyncpg.Connection, database_url: str
) -> None:
    """The sweep alone (no score consumer): it asks for a batch, waits for it to be done,
    stalls on nothing, and its progress follows the database."""
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, rule_version) "
        "SELECT 'lead-' || lpad(g::text, 3, '0'), 'known', 0, 0, 'v1' "
        "FROM generate_series(1, 5) g"
    )
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, rule_version, merged_into) "
        "VALUES ('merged-1', 'known', 0, 0, 'v1', 'lead-001')"
    )
    kafka = KafkaSettings(
        bootstrap_servers=pipeline.addresses.kafka_bootstrap, topic_prefix=pipeline.prefix
    )
    settings = ScoreSettings(
        database=DatabaseSettings(url=database_url),
        kafka=kafka,
        sweep_batch=2,
        rescore_interval_s=0.6,
    )
    engine = create_engine(settings.database, application_name="test-rescore-sweep")
    commands = CommandSender(kafka, client_id="test-rescore-sweep")
    sweep = RescoreSweep(under="rules")

    async def step() -> float:
        return await sweep.step(sessions=sessions, commands=commands, settings=settings)

    try:
        sessions = create_sessionmaker(engine)
        async with unit_of_work(sessions) as session:  # the live rules: version "1"
            saved = await RULES.save(session, document=LIVE, author="test", note="")
            await RULES.publish(session, saved.version, by="test")
        progress = sweep.progress
        # nobody rescores: one batch asked; the sweep wants to look again soon
        assert await step() == POLL_S
        assert (progress.to_rescore, progress.pass_leads, progress.asked) == (5, 5, 2)
        assert progress.rescored == 0
        # still not done: nothing more asked; once the batch is older than the interval, the
        # sweep looks only every interval
        assert await step() == POLL_S
        assert progress.asked == 2
        await asyncio.sleep(settings.rescore_interval_s)
        assert await step() == settings.rescore_interval_s
        assert progress.asked == 2
        # the consumer rescores the first batch: the next step moves on to the next ones
        await db.execute("UPDATE score.leads SET rule_version = '1' WHERE lead_id <= 'lead-002'")
        assert await step() == POLL_S
        assert (progress.rescored, progress.to_rescore, progress.asked) == (2, 3, 4)
        # everything done: the pass ends with a fresh count of 0, and the sweep slows down
        await db.execute("UPDATE score.leads SET rule_version = '1' WHERE merged_into IS NULL")
        assert await step() == settings.rescore_interval_s
        assert sweep.progress.view()["done"] is True
        assert sweep.progress.rescored == 4  # the fifth was never asked: the recount saw it
        # a lead scored by an old replica later: a new pass
        await db.execute("UPDATE score.leads SET rule_version = 'v1' WHERE lead_id = 'lead-003'")
        assert await step() == POLL_S
        assert (sweep.progress.pass_leads, sweep.progress.asked) == (1, 1)
    finally:
        await commands.close()
        await engine.dispose()

    asked = await pipeline.read(
        SCORE_COMMANDS.full_name(pipeline.prefix), until=lambda records: len(records) >= 5
    )
    leads = sorted({record.json()["lead_id"] for record in asked})
    assert leads == ["lead-001", "lead-002", "lead-003", "lead-004"]  # never the merged lead
    assert all(r.json()["command_id"].startswith("rescore:rules-1:") for r in asked)


async def test_sweep_queries_read_indexes_not_the_whole_leads_table(
    database_url: str, db: asyncpg.Connection
) -> None:
    """With many leads on the running rules and a few on an old version, every query of the
    rescore and decay sweeps is planned as an index read (EXPLAIN), and they return the few."""
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, rule_version, as_of, email) "
        "SELECT 'lead-' || lpad(g::text, 6, '0'), CASE WHEN g % 50 = 0 THEN 'mql' ELSE 'lead' END,"
        " 0, 0, 'v2', now(), 'p' || g || '@example.com' FROM generate_series(1, 30000) g"
    )
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, rule_version) "
        "SELECT 'old-' || g, 'known', 0, 0, CASE WHEN g % 2 = 0 THEN 'v1' ELSE 'v3' END "
        "FROM generate_series(1, 12) g"
    )
    await db.execute("ANALYZE score.leads")
    async with logged_session(database_url) as (session, statements):
        first = await repository.leads_on_other_version(
            session, "rules", version="v2", after=None, limit=5
        )
        rest = await repository.leads_on_other_version(
            session, "rules", version="v2", after=first[-1], limit=100
        )
        left = await repository.count_leads_on_other_version(session, "rules", version="v2")
        still = await repository.leads_still_on_other_version(
            session, "rules", ["old-1", "old-2", "lead-000001"], version="v2"
        )
        await repository.mqls_to_reevaluate(session, evaluated_before=datetime.now(UTC),
                                            limit=100)  # fmt: skip
        found = await repository.find_lead(session, "P77@example.com")  # explain, feedback
    assert [v for v, _ in first] == ["v1"] * 5
    assert len(rest) == 7
    assert [v for v, _ in rest][-6:] == ["v3"] * 6
    assert sorted(lead for _, lead in first + rest) == sorted(f"old-{g}" for g in range(1, 13))
    assert (left, still) == (12, ["old-1", "old-2"])
    assert found is not None
    assert found.lead_id == "lead-000077"

    assert len(statements) == 6
    await _assert_index_reads(db, statements)


async def test_the_model_sweep_finds_identified_leads_without_the_live_model_by_index(
    database_url: str, db: asyncpg.Connection
) -> None:
    """After a model's publication, the sweep's queries find the identified leads on another
    model version or on none (never an anonymous or merged one), as index reads (EXPLAIN)."""
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, identified, model_version) "
        "SELECT 'lead-' || lpad(g::text, 6, '0'), 'lead', 0, 0, true, '3' "
        "FROM generate_series(1, 30000) g"
    )
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, identified, model_version) "
        "VALUES ('none-1', 'known', 0, 0, true, NULL), ('old-1', 'lead', 0, 0, true, '2'), "
        "('anon-1', 'anonymous', 0, 0, false, NULL), ('new-1', 'mql', 0, 0, true, '4')"
    )
    await db.execute(
        "INSERT INTO score.leads (lead_id, stage, fit, behaviour, identified, merged_into) "
        "VALUES ('merged-1', 'known', 0, 0, true, 'lead-000001')"
    )
    await db.execute("ANALYZE score.leads")
    async with logged_session(database_url) as (session, statements):
        first = await repository.leads_on_other_version(
            session, "model", version="3", after=None, limit=2
        )
        rest = await repository.leads_on_other_version(
            session, "model", version="3", after=first[-1], limit=100
        )
        left = await repository.count_leads_on_other_version(session, "model", version="3")
        still = await repository.leads_still_on_other_version(
            session, "model", ["none-1", "anon-1", "lead-000002"], version="3"
        )
    assert first == [("", "none-1"), ("2", "old-1")]
    assert rest == [("4", "new-1")]
    assert (left, still) == (3, ["none-1"])
    assert len(statements) == 4
    await _assert_index_reads(db, statements)


@asynccontextmanager
async def logged_session(
    database_url: str,
) -> AsyncIterator[tuple[AsyncSession, list[tuple[str, Any]]]]:
    """A session whose statements on score.leads are collected (with their parameters), to
    EXPLAIN them afterwards."""
    engine = create_engine(DatabaseSettings(url=database_url), application_name="test-explain")
    statements: list[tuple[str, Any]] = []

    def capture(query: asyncpg.connection.LoggedQuery) -> None:
        if "score.leads" in query.query:  # not the session's BEGIN
            statements.append((query.query, query.args))

    try:
        async with create_sessionmaker(engine)() as session:
            (await driver_connection(session)).add_query_logger(capture)
            yield session, statements
    finally:
        await engine.dispose()


async def _assert_index_reads(db: asyncpg.Connection, statements: list[tuple[str, Any]]) -> None:
    for statement, parameters in statements:
        plan = json.loads(await db.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *parameters))
        scans = list(_nodes(plan[0]["Plan"]))
        assert "Seq Scan" not in scans, f"{statement}\n{scans}"
        assert any("Index" in scan for scan in scans), scans


def _nodes(plan: dict[str, Any]) -> Any:
    yield plan["Node Type"]
    for child in plan.get("Plans", []):
        yield from _nodes(child)
