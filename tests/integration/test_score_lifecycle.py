"""score through the real broker and PostgreSQL: enriched events and CRM feedback in, scores
and stage changes out, each counted once, explained point by point."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import yaml

from services.score.engine.ruleset import DEFAULT_RULES_FILE
from shared.codec import encode
from shared.contracts import CrmFeedback, EnrichedEvent, ScoreCommand
from shared.topics import (
    CRM_FEEDBACK,
    EVENTS_ENRICHED,
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    SCORE_COMMANDS,
)
from tests.fixtures.pipeline import Pipeline, Record
from tests.fixtures.polling import eventually

NOW = datetime.now(UTC).replace(microsecond=0)
VP = {
    "email": "maria@northwind.io",
    "title": "VP Sales",
    "seniority": "vp",
    "job_function": "sales",
    "company_domain": "northwind.io",
}
NORTHWIND = {"domain": "northwind.io", "employee_count": 850, "industry": "Software",
             "annual_revenue_usd": 120_000_000, "country": "US"}  # fmt: skip


def enriched(lead_id: str, message_id: str, *, at: datetime = NOW, **fields: Any) -> bytes:
    event = EnrichedEvent.model_validate(
        {
            "message_id": message_id,
            "lead_id": lead_id,
            "type": "track",
            "source": "website",
            "timestamp": at,
            "received_at": at,
            "identified": True,
            "stage": "known",
            "profile": VP,
            "firmographics": NORTHWIND,
            **fields,
        }
    )
    return encode(event)


def feedback(
    lead_id: str | None,
    outcome: str,
    *,
    email: str | None = None,
    at: datetime = NOW + timedelta(minutes=5),
) -> bytes:
    return encode(
        CrmFeedback.model_validate(
            {
                "feedback_id": f"fb-{uuid.uuid4().hex[:8]}",
                "lead_id": lead_id,
                "email": email,
                "outcome": outcome,
                "at": at,
            }
        )
    )


def of_lead(lead_id: str) -> Any:
    return lambda records: [r.json() for r in records if r.json()["lead_id"] == lead_id]


T = TypeVar("T")


async def stages(pipeline: Pipeline, lead_id: str, count: int) -> list[tuple[str, str]]:
    records = await pipeline.read(
        LEADS_LIFECYCLE.full_name(pipeline.prefix),
        until=lambda rs: len(of_lead(lead_id)(rs)) >= count,
    )
    return [(c["from_stage"], c["to_stage"]) for c in of_lead(lead_id)(records)]


async def test_vp_demo_is_mql_at_once_and_crm_feedback_moves_it_on(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", event="Demo Requested"),
                         key=lead.encode())  # fmt: skip
    assert await stages(pipeline, lead, 1) == [("anonymous", "mql")]

    for outcome in ("accepted", "qualified"):
        pipeline.produce_raw(CRM_FEEDBACK, feedback(lead, outcome), key=lead.encode())
    assert await stages(pipeline, lead, 3) == [
        ("anonymous", "mql"), ("mql", "sql"), ("sql", "sqo"),
    ]  # fmt: skip
    # a won deal after sqo, then a "rejected" that no longer applies: refused, recorded
    pipeline.produce_raw(CRM_FEEDBACK, feedback(lead, "won"), key=lead.encode())
    pipeline.produce_raw(CRM_FEEDBACK, feedback(lead, "rejected"), key=lead.encode())
    assert (await stages(pipeline, lead, 4))[-1] == ("sqo", "customer")
    refused = await eventually(
        lambda: db.fetch(
            "SELECT outcome, detail FROM score.feedback WHERE lead_id = $1 AND result = 'refused'",
            lead,
        ),
        "the refused 'rejected' feedback recorded",
    )
    assert refused[0]["outcome"] == "rejected"
    assert "does not apply to a customer" in refused[0]["detail"]


async def test_a_lead_sales_found_before_marketing_did_is_accepted_qualified_and_won(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score", "router")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    student = {"email": f"{lead}@example.edu", "title": "Student"}
    pipeline.produce_raw(
        EVENTS_ENRICHED,
        enriched(lead, "m1", event="Blog Post Viewed", profile=student, firmographics=None),
        key=lead.encode(),
    )
    assert await stages(pipeline, lead, 1) == [("anonymous", "lead")]
    nurture = await eventually(
        lambda: pipeline.routing_history(lead, seen=False),
        "the lead's nurture decision",
        until=lambda history: history["decisions"],
    )
    assert nurture["decisions"][0]["route"] == "nurture"

    for minutes, outcome in ((10, "accepted"), (20, "qualified"), (30, "won")):
        pipeline.produce_raw(
            CRM_FEEDBACK,
            feedback(lead, outcome, at=NOW + timedelta(minutes=minutes)),
            key=lead.encode(),
        )
    records = await pipeline.read(
        LEADS_LIFECYCLE.full_name(pipeline.prefix),
        until=lambda rs: len(of_lead(lead)(rs)) >= 4,
    )
    moves = [
        (c["from_stage"], c["to_stage"], c["by_sales"], c["skipped_stages"])
        for c in of_lead(lead)(records)
    ]
    assert moves == [
        ("anonymous", "lead", False, []),
        ("lead", "sql", True, ["mql"]),  # sales-sourced: it never was an mql
        ("sql", "sqo", True, []),
        ("sqo", "customer", True, []),
    ]
    stored = await db.fetch(
        "SELECT to_stage, by_sales, skipped FROM score.stage_changes WHERE lead_id = $1 "
        "ORDER BY at",
        lead,
    )
    assert [(r["to_stage"], r["by_sales"], r["skipped"]) for r in stored][1] == (
        "sql", True, ["mql"],
    )  # fmt: skip
    # The router saw it as any other move: the nurture decision is closed, nothing is open.
    history = await eventually(
        lambda: pipeline.routing_history(lead, seen=False),
        "the nurture decision closed",
        until=lambda history: history["decisions"][0]["closed_reason"],
    )
    assert len(history["decisions"]) == 1
    assert history["decisions"][0]["closed_reason"] in ("lead changed stage", "crm: accepted")


async def test_outcomes_out_of_order_end_in_the_stage_the_latest_implies(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    won_first, lost_last = f"won-{uuid.uuid4().hex[:8]}", f"lost-{uuid.uuid4().hex[:8]}"
    for lead in (won_first, lost_last):
        pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", event="Demo Requested"),
                             key=lead.encode())  # fmt: skip
        await stages(pipeline, lead, 1)
    # The CRM's sync sends the won deal before the steps that led to it, then one again.
    for minutes, outcome in ((30, "won"), (10, "accepted"), (20, "qualified"), (10, "accepted")):
        at = NOW + timedelta(minutes=minutes)
        pipeline.produce_raw(CRM_FEEDBACK, feedback(won_first, outcome, at=at),
                             key=won_first.encode())  # fmt: skip
    # An mql sales loses at 50; a won of 40 and an accepted of 10 arrive after it: the loss holds.
    for minutes, outcome in ((50, "lost"), (40, "won"), (10, "accepted")):
        at = NOW + timedelta(minutes=minutes)
        pipeline.produce_raw(CRM_FEEDBACK, feedback(lost_last, outcome, at=at),
                             key=lost_last.encode())  # fmt: skip

    def results(lead: str) -> Callable[[], Awaitable[list[tuple[str, str]]]]:
        async def probe() -> list[tuple[str, str]]:
            rows = await db.fetch(
                "SELECT outcome, result FROM score.feedback WHERE lead_id = $1 "
                "ORDER BY recorded_at",
                lead,
            )
            return [(r["outcome"], r["result"]) for r in rows]

        return probe

    assert await eventually(
        results(won_first), "won_first's outcomes", until=lambda r: len(r) == 4
    ) == [
        ("won", "applied"),
        ("accepted", "superseded"),
        ("qualified", "superseded"),
        ("accepted", "superseded"),
    ]
    assert await eventually(
        results(lost_last), "lost_last's outcomes", until=lambda r: len(r) == 3
    ) == [
        ("lost", "applied"),
        ("won", "superseded"),
        ("accepted", "superseded"),
    ]
    final = {
        row["lead_id"]: row["stage"]
        for row in await db.fetch(
            "SELECT lead_id, stage FROM score.leads WHERE lead_id = ANY($1)", [won_first, lost_last]
        )
    }
    assert final == {won_first: "customer", lost_last: "recycled"}
    # mql -> customer at once, recording what it skipped; an mql sales loses is recycled
    assert (await stages(pipeline, won_first, 2))[-1] == ("mql", "customer")
    assert await stages(pipeline, lost_last, 2) == [("anonymous", "mql"), ("mql", "recycled")]
    explained = await pipeline.explain(won_first)
    assert [line["result"] for line in explained["sales"]] == [
        "superseded", "superseded", "superseded", "applied",
    ]  # fmt: skip


async def test_rejection_recycles_and_unknown_lead_goes_to_the_dead_letters(
    pipeline: Pipeline,
) -> None:
    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", event="Demo Requested"),
                         key=lead.encode())  # fmt: skip
    await stages(pipeline, lead, 1)
    # feedback by email (the CRM does not know lead ids)
    pipeline.produce_raw(CRM_FEEDBACK, feedback(None, "rejected", email=VP["email"]), key=b"x")
    pipeline.produce_raw(CRM_FEEDBACK, feedback("nobody", "accepted"), key=b"nobody")
    assert (await stages(pipeline, lead, 2))[-1] == ("mql", "recycled")
    dead = await pipeline.read(CRM_FEEDBACK.dlq_name(pipeline.prefix), until=lambda rs: bool(rs))
    assert "no lead with id 'nobody'" in dead[0].headers["leadflow.error"].decode()


async def test_redelivery_counts_once_and_unsubscribe_pulls_the_lead_down(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    demo = enriched(lead, "m-demo", event="Demo Requested")
    pipeline.produce_raw(EVENTS_ENRICHED, demo, key=lead.encode())
    pipeline.produce_raw(EVENTS_ENRICHED, demo, key=lead.encode())  # a replay from enrich
    pipeline.produce_raw(
        EVENTS_ENRICHED,
        enriched(lead, "m-unsub", at=NOW + timedelta(minutes=1), event="Unsubscribed"),
        key=lead.encode(),
    )
    scored: list[Record] = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix), until=lambda rs: len(of_lead(lead)(rs)) >= 2
    )
    scores = [(s["message_id"], s["score"]["behaviour"]) for s in of_lead(lead)(scored)]
    assert scores == [("m-demo", 60), ("m-unsub", 10)]
    later = await pipeline.read_all(LEADS_SCORED.full_name(pipeline.prefix))
    assert len(of_lead(lead)(later)) == 2  # the replayed demo scored nothing
    assert (
        await db.fetchval(
            "SELECT count(*) FROM score.ledger WHERE lead_id = $1 AND rule_id = 'demo-request'",
            lead,
        )
        == 1
    )

    # the explanation adds up to the stored score
    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("score"), headers=pipeline.addresses.api_headers
    ) as client:
        answer = await client.get(f"/v1/leads/{VP['email']}/explain")
        missing = await client.get("/v1/leads/nobody/explain")
    assert answer.status_code == 200
    explained = answer.json()
    stored = await db.fetchrow(
        "SELECT fit, behaviour, total FROM score.leads WHERE lead_id = $1", lead
    )
    score = explained["score"]  # as leads.scored carries it
    assert (score["fit"], score["total"]) == (stored["fit"], stored["total"])
    assert round(sum(line["value_now"] for line in explained["lines"])) == score["total"]
    assert {r["rule_id"] for r in explained["by_rule"]} >= {"vp", "demo-request", "unsubscribed"}
    assert missing.status_code == 404


async def test_merge_folds_behaviour_into_the_survivor_once(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    run = uuid.uuid4().hex[:8]
    survivor, other = f"lead-a-{run}", f"lead-b-{run}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(survivor, "a1", event="Webinar Attended"),
                         key=survivor.encode())  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(other, "b1", event="Trial Started"),
                         key=other.encode())  # fmt: skip
    merged = enriched(
        survivor, f"merge-{run}", kind="merged", type=None, at=NOW + timedelta(minutes=2),
        merge={"merge_id": f"mg-{run}", "surviving_lead_id": survivor,
               "merged_lead_ids": [other], "reason": "same email"},
    )  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, merged, key=survivor.encode())
    pipeline.produce_raw(EVENTS_ENRICHED, merged, key=survivor.encode())  # redelivered
    # Whichever comes first on its partition, the merge or b1, the survivor ends with both.
    await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda rs: any(s["score"]["behaviour"] == 20 + 40 for s in of_lead(survivor)(rs)),
    )
    settled = await pipeline.read_all(LEADS_SCORED.full_name(pipeline.prefix))
    assert of_lead(survivor)(settled)[-1]["score"]["behaviour"] == 20 + 40  # trial counted once
    assert (
        await db.fetchval(
            "SELECT count(*) FROM score.ledger WHERE lead_id = $1 AND rule_id = 'trial-started'",
            survivor,
        )
        == 1
    )
    rows = await db.fetch("SELECT lead_id, merged_into FROM score.leads WHERE lead_id = $1", other)
    assert rows[0]["merged_into"] == survivor
    assert await db.fetchval("SELECT count(*) FROM score.ledger WHERE lead_id = $1", other) == 0


async def test_an_event_of_a_merged_lead_arriving_late_counts_under_the_survivor(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    run = uuid.uuid4().hex[:8]
    survivor, other = f"lead-a-{run}", f"lead-b-{run}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(survivor, "a1", event="Webinar Attended"),
                         key=survivor.encode())  # fmt: skip
    merged = enriched(
        survivor, f"merge-{run}", kind="merged", type=None,
        merge={"merge_id": f"mg-{run}", "surviving_lead_id": survivor,
               "merged_lead_ids": [other], "reason": "same email"},
    )  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, merged, key=survivor.encode())
    await eventually(  # the merge is stored before the late event is produced
        lambda: db.fetchval("SELECT merged_into FROM score.leads WHERE lead_id = $1", other),
        f"{other} marked as merged",
    )
    # the merged lead's own event, delayed on its partition, and a redelivery of it
    late = enriched(other, "b1", event="Trial Started", profile={"email": "b@gmail.com"})
    pipeline.produce_raw(EVENTS_ENRICHED, late, key=other.encode())
    pipeline.produce_raw(EVENTS_ENRICHED, late, key=other.encode())
    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda rs: any(s["message_id"] == "b1" for s in of_lead(survivor)(rs)),
    )
    late_score = next(s for s in of_lead(survivor)(scored) if s["message_id"] == "b1")
    assert late_score["score"]["behaviour"] == 20 + 40
    assert late_score["score"]["fit"] == 80  # the survivor's picture, not the merged lead's
    everything = await pipeline.read_all(LEADS_SCORED.full_name(pipeline.prefix))
    assert [s["message_id"] for s in of_lead(survivor)(everything)].count("b1") == 1
    assert of_lead(other)(everything) == []


async def test_decay_sweep_recycles_an_mql_that_stays_below_the_line(
    pipeline: Pipeline, database_url: str
) -> None:
    from services.score.config import ScoreSettings
    from services.score.sweep import sweep_decayed_mqls
    from shared.commands import CommandSender
    from shared.contracts import ScoreCommand
    from shared.db import create_engine, create_sessionmaker
    from shared.settings import DatabaseSettings, KafkaSettings
    from shared.topics import SCORE_COMMANDS

    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", event="Demo Requested"),
                         key=lead.encode())  # fmt: skip
    assert await stages(pipeline, lead, 1) == [("anonymous", "mql")]

    kafka = KafkaSettings(
        bootstrap_servers=pipeline.addresses.kafka_bootstrap, topic_prefix=pipeline.prefix
    )
    settings = ScoreSettings(database=DatabaseSettings(url=database_url), kafka=kafka)
    engine = create_engine(settings.database, application_name="test-sweep")
    commands = CommandSender(kafka, client_id="test-sweep")
    try:
        sessions = create_sessionmaker(engine)
        # 60 days on, the demo has lost three quarters of its points: below the MQL line
        asked = await sweep_decayed_mqls(
            sessions=sessions, commands=commands, settings=settings, now=NOW + timedelta(days=60)
        )
        assert asked == 1
        scored = await pipeline.read(
            LEADS_SCORED.full_name(pipeline.prefix),
            until=lambda rs: any(s["message_id"].startswith("sweep:") for s in of_lead(lead)(rs)),
        )
        decayed = [s for s in of_lead(lead)(scored) if s["message_id"].startswith("sweep:")]
        assert decayed[0]["score"]["behaviour"] == 15
        # still an MQL: 14 days below the line are allowed; 15 days later it is recycled
        later = ScoreCommand(command_id="sweep-later", kind="reevaluate", lead_id=lead,
                             at=NOW + timedelta(days=75))  # fmt: skip
        pipeline.produce_raw(SCORE_COMMANDS, encode(later), key=lead.encode())
        changes = await stages(pipeline, lead, 2)
        assert changes[-1] == ("mql", "recycled")
    finally:
        await commands.close()
        await engine.dispose()


@pytest.mark.slow  # about 21 s: `make test-slow` (make test stays within 20 minutes)
async def test_a_rules_change_rescores_stored_leads_and_emits_what_changes(
    pipeline: Pipeline, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", event="Webinar Attended"),
                         key=lead.encode())  # fmt: skip
    assert await stages(pipeline, lead, 1) == [("anonymous", "lead")]  # 20 behaviour: not yet
    assert pipeline.stop("score") == 0

    # RevOps values webinars more in the rules file kept in git; a deploy restarts score with
    # it: its content is new, so it is published as version 2 (the default file was 1)
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "test-2"
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = 35
    candidate = tmp_path / "rules.yaml"
    candidate.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("LEADFLOW_SCORE_RULES_FILE", str(candidate))
    monkeypatch.setenv("LEADFLOW_SCORE_RESCORE_INTERVAL_S", "0.5")
    await pipeline.start("score")

    assert (await stages(pipeline, lead, 2))[-1] == ("lead", "mql")
    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda rs: any(s["rule_version"] == "2" for s in of_lead(lead)(rs)),
    )
    rescored = [s for s in of_lead(lead)(scored) if s["rule_version"] == "2"]
    assert rescored[0]["score"]["behaviour"] == 35
    versions = await db.fetch(
        "SELECT DISTINCT rule_version FROM score.ledger WHERE lead_id = $1", lead
    )
    assert [v["rule_version"] for v in versions] == ["2"]
    note = await db.fetchval(
        "SELECT note FROM score.config_versions WHERE kind = 'rules' AND version = '2'"
    )
    assert "version label test-2" in note
    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("score"), headers=pipeline.addresses.api_headers
    ) as client:

        async def rescore_progress() -> dict[str, Any]:
            return dict((await client.get("/v1/rules/rescore")).json())

        # the sweep's pass ends once the consumer has stored the rescore
        progress = await eventually(
            rescore_progress, "the rescore pass done", until=lambda p: p["done"], timeout_s=20
        )
    assert progress["rule_version"] == "2"
    assert (progress["done"], progress["to_rescore"]) == (True, 0)
    assert (progress["pass"]["leads"], progress["pass"]["rescored"]) == (1, 1)


@pytest.mark.slow  # about 20 s: `make test-slow` (make test stays within 20 minutes)
async def test_rescoring_a_survivor_counts_its_merged_leads_messages_for_behaviour_only(
    pipeline: Pipeline, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await pipeline.start("score")
    run = uuid.uuid4().hex[:8]
    survivor, other = f"lead-a-{run}", f"lead-b-{run}"
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(survivor, "a1", event="Webinar Attended"),
                         key=survivor.encode())  # fmt: skip
    merged = enriched(
        survivor, f"merge-{run}", kind="merged", type=None,
        merge={"merge_id": f"mg-{run}", "surviving_lead_id": survivor,
               "merged_lead_ids": [other], "reason": "same email"},
    )  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, merged, key=survivor.encode())
    await eventually(
        lambda: db.fetchval("SELECT merged_into FROM score.leads WHERE lead_id = $1", other),
        f"{other} marked as merged",
    )
    # the merged lead's own event, with its own (student, free-mail) picture, arrives late
    student = {"email": "b@gmail.com", "seniority": "student/intern", "free_mail": True}
    late = enriched(other, "b1", at=NOW + timedelta(minutes=3), event="Trial Started",
                    profile=student, firmographics=None)  # fmt: skip
    pipeline.produce_raw(EVENTS_ENRICHED, late, key=other.encode())
    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda rs: any(s["message_id"] == "b1" for s in of_lead(survivor)(rs)),
    )
    live = next(s for s in of_lead(survivor)(scored) if s["message_id"] == "b1")["score"]
    assert (live["fit"], live["behaviour"]) == (80, 20 + 40)
    assert pipeline.stop("score") == 0

    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "test-merge-2"
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = 35
    candidate = tmp_path / "rules.yaml"
    candidate.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("LEADFLOW_SCORE_RULES_FILE", str(candidate))
    monkeypatch.setenv("LEADFLOW_SCORE_RESCORE_INTERVAL_S", "0.5")
    await pipeline.start("score")

    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda rs: any(s["rule_version"] == "2" for s in of_lead(survivor)(rs)),
    )
    rescored = next(s for s in of_lead(survivor)(scored) if s["rule_version"] == "2")
    # the survivor's own picture still makes its fit; the merged lead's trial still counts
    assert (rescored["score"]["fit"], rescored["score"]["behaviour"]) == (80, 35 + 40)
    fit_rules = await db.fetch(
        "SELECT DISTINCT rule_id FROM score.ledger WHERE lead_id = $1 AND kind = 'fit'", survivor
    )
    assert "student-or-intern" not in {r["rule_id"] for r in fit_rules}
    assert (
        await db.fetchval(
            "SELECT profile FROM score.history WHERE lead_id = $1 AND message_id = 'b1'", survivor
        )
        is False
    )


async def test_a_backfilled_mql_is_recycled_at_the_time_its_score_fell_below_the_line(
    pipeline: Pipeline,
) -> None:
    """An MQL from a history posted today, its demo request 120 days old: the decay sweep's
    re-evaluation finds when its decaying score really fell below the line, and recycles it at
    the day that was `recycle_after_days_below` later, as live scoring would have, not today
    (so the router leaves the move as history)."""
    await pipeline.start("score")
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    then = NOW - timedelta(days=120)
    pipeline.produce_raw(EVENTS_ENRICHED, enriched(lead, "m1", at=then, event="Demo Requested"),
                         key=lead.encode())  # fmt: skip
    assert await stages(pipeline, lead, 1) == [("anonymous", "mql")]

    command = ScoreCommand(command_id=f"sweep:{lead}", kind="reevaluate", lead_id=lead, at=NOW)
    pipeline.produce_raw(SCORE_COMMANDS, encode(command), key=lead.encode())
    records = await pipeline.read(
        LEADS_LIFECYCLE.full_name(pipeline.prefix),
        until=lambda rs: len(of_lead(lead)(rs)) >= 2,
    )
    recycled = of_lead(lead)(records)[-1]
    assert (recycled["from_stage"], recycled["to_stage"]) == ("mql", "recycled")
    at = datetime.fromisoformat(recycled["at"])
    # the demo's 60 points halve every 30 days: below the MQL line within weeks, not today
    assert then + timedelta(days=14) < at < NOW - timedelta(days=30)
    assert "below the MQL line since" in recycled["reason"]
