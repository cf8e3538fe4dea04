"""Rule changes through score's HTTP endpoints and the rescore sweep, on the real broker and
PostgreSQL: a candidate rules file simulated on stored history (nothing written), a bad one
refused with its line and field, and the sweep's progress and queries (index reads only)."""

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
from services.score.sweep import POLL_S, RescoreSweep
from shared.commands import CommandSender
from shared.db import create_engine, create_sessionmaker, driver_connection
from shared.settings import DatabaseSettings, KafkaSettings
from shared.topics import EVENTS_ENRICHED, SCORE_COMMANDS
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_score_lifecycle import enriched, stages

LIVE = yaml.safe_load(DEFAULT_RULES_FILE.read_text())


def candidate_rules() -> str:
    """Webinars worth much more, demos much less."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "candidate-1"
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = 35
        if rule["id"] == "demo-request":
            rule["points"] = 5
    return yaml.safe_dump(document, sort_keys=False)


async def test_simulate_endpoint_reports_what_a_candidate_would_change_and_writes_nothing(
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
        answer = await client.post(
            "/v1/rules/simulate",
            content=candidate_rules(),
            headers={"Content-Type": "application/yaml"},
        )
        bad = candidate_rules().replace("points: 35", "points: lots")
        refused = await client.post("/v1/rules/simulate", content=bad)
        not_yaml = await client.post("/v1/rules/simulate", content=b"rules: [\n  - {id: x\n")
        not_text = await client.post("/v1/rules/simulate", content=b"\xff\xfe\x00")
        too_big = await client.post("/v1/rules/simulate", content=b"#" * 1_000_001)
        progress = await client.get("/v1/rules/rescore")

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["live_version"], report["candidate_version"]) == (LIVE["version"], "candidate-1")
    assert (report["leads"], report["scores_changed"], report["stage_changes"]) == (2, 2, 2)
    assert [c["lead_id"] for c in report["becoming_mql"]] == [webinar]
    assert [c["lead_id"] for c in report["dropping_below_mql"]] == [demo]
    became = report["becoming_mql"][0]
    assert (became["before"]["behaviour"], became["after"]["behaviour"]) == (20, 35)
    assert became["after"]["qualifies_as_mql"] is True

    assert refused.status_code == 400
    line = next(
        n for n, text in enumerate(bad.splitlines(), 1) if "points: lots" in text
    )  # the line the operator must fix
    assert refused.json()["error"].startswith(f"request body: line {line}: rules.")
    assert ".points: Input should be a valid integer" in refused.json()["error"]
    assert not_yaml.status_code == 400
    assert not_yaml.json()["error"].startswith("request body: ")
    assert not_text.status_code == 400
    assert too_big.status_code == 413

    assert progress.status_code == 200
    assert progress.json()["rule_version"] == LIVE["version"]

    # the CLI gives the same report
    candidate = tmp_path / "candidate.yaml"
    candidate.write_text(candidate_rules())
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.score", "simulate", str(candidate),
        env={**os.environ, "LEADFLOW_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await cli.communicate()
    assert cli.returncode == 0, err.decode()
    printed = out.decode()
    assert f"rules {LIVE['version']} -> candidate-1: 2 leads" in printed
    assert "would become MQL:       1" in printed
    # leads named as people know them: the email, with the lead id
    assert re.search(rf"^    \S+@\S+ <{webinar}> \(lead\) ", printed, re.MULTILINE), printed
    assert re.search(rf"^    \S+@\S+ <{demo}> ", printed, re.MULTILINE), printed

    # a simulation writes nothing
    assert await db.fetchval("SELECT count(*) FROM score.ledger") == ledger_before
    versions = await db.fetch("SELECT DISTINCT rule_version FROM score.leads")
    assert [v["rule_version"] for v in versions] == [LIVE["version"]]


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
    sweep = RescoreSweep(under="rules", version="v2")

    async def step() -> float:
        return await sweep.step(sessions=sessions, commands=commands, settings=settings)

    try:
        sessions = create_sessionmaker(engine)
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
        await db.execute("UPDATE score.leads SET rule_version = 'v2' WHERE lead_id <= 'lead-002'")
        assert await step() == POLL_S
        assert (progress.rescored, progress.to_rescore, progress.asked) == (2, 3, 4)
        # everything done: the pass ends with a fresh count of 0, and the sweep slows down
        await db.execute("UPDATE score.leads SET rule_version = 'v2' WHERE merged_into IS NULL")
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
    assert all(r.json()["command_id"].startswith("rescore:rules-v2:") for r in asked)


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
