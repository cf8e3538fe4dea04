"""leadflow learns, through the real broker and PostgreSQL: a world's history and its CRM
outcomes in, a model trained in a process of its own, published, and then every new event of an
identified lead scored with its likelihood and factors; the rules it proposes pass simulate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from confluent_kafka import Producer

from services.score.engine.ruleset import DEFAULT_RULES_FILE, parse_rules
from shared.codec import encode
from shared.contracts import EnrichedEvent, LeadProfile
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, LEADS_SCORED, Topic
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.world import WorldLead, generate

WORLD_LEADS = 1400  # above the default minimums (1,000 leads, 120 conversions) once labelled


def produce(pipeline: Pipeline, topic: Topic, messages: list[tuple[str, Any]]) -> None:
    """Produce (key, value) pairs at once (one flush), keyed by lead as the services do."""
    producer = Producer(
        {
            "bootstrap.servers": pipeline.addresses.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
        }
    )
    for key, value in messages:
        producer.produce(topic.full_name(pipeline.prefix), value=encode(value), key=key.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


async def api(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60, headers=pipeline.addresses.api_headers) as client:
        return await client.request(method, pipeline.addresses.api_url("score", path), **kwargs)


async def load_world(pipeline: Pipeline, db: asyncpg.Connection, world: list[WorldLead]) -> None:
    """The world's events, then (once score has every lead) its CRM outcomes: an outcome for a
    lead score has not seen yet would be a dead letter."""
    events = [(lead.lead_id, event) for lead in world for event in lead.events]
    produce(pipeline, EVENTS_ENRICHED, events)
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.history"),
        "score stored every event of the world",
        until=lambda count: count == len(events),
        timeout_s=180,
    )
    outcomes = [(lead.lead_id, item) for lead in world for item in lead.feedback]
    produce(pipeline, CRM_FEEDBACK, outcomes)
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.feedback"),
        "score recorded every outcome",
        until=lambda count: count == len(outcomes),
        timeout_s=120,
    )


async def test_outcomes_train_a_model_that_once_published_scores_every_new_event(
    pipeline: Pipeline, db: asyncpg.Connection, tmp_path: Path
) -> None:
    # the default rules, with an MQL line on the likelihood too (ignored while no model is live)
    rules_document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    rules_document["mql"]["min_likelihood"] = 0.3
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules_document))
    pipeline.addresses.service_env["score"] = {"LEADFLOW_SCORE_RULES_FILE": str(rules_file)}
    await pipeline.start("score")
    world = generate(WORLD_LEADS)
    await load_world(pipeline, db, world)

    # nothing published yet: scores carry no likelihood
    answer = await api(pipeline, "GET", "/v1/models")
    assert answer.json()["live"] is None

    # a training through the API runs in a process of its own and stores a version
    started = await api(pipeline, "POST", "/v1/models/train")
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    runs = await eventually(
        lambda: db.fetch(
            "SELECT status, message, version FROM score.trainings WHERE run_id = $1", run_id
        ),
        "the training finished",
        until=lambda rows: rows and rows[0]["status"] != "running",
        timeout_s=240,
    )
    assert runs[0]["status"] == "stored", runs[0]["message"]
    version = runs[0]["version"]
    model = (await api(pipeline, "GET", f"/v1/models/{version}")).json()["document"]
    evaluation = model["evaluation"]
    assert evaluation["model"]["auc"] > evaluation["rules"]["auc"]
    picture = await api(pipeline, "GET", f"/v1/models/{version}/evaluation.svg")
    assert picture.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in picture.content

    published = await api(pipeline, "POST", f"/v1/models/{version}/publish",
                          json={"note": "first model"})  # fmt: skip
    assert published.status_code == 200, published.text
    assert published.json()["published_by"] == "local-stack"

    # a new lead, today: a buyer who uses the pricing calculator (no rule reads it)
    now = datetime.now(UTC)
    buyer = "fresh-buyer"
    calls: list[dict[str, Any]] = [
        {"type": "identify"},
        {"type": "track", "event": "Pricing Calculator Used"},
        {"type": "page", "name": "/docs", "properties": {"path": "/docs/api"}},
    ]
    produce(pipeline, EVENTS_ENRICHED, [
        (buyer, fresh_event(buyer, f"{buyer}-{n}", now - timedelta(minutes=5 - n), call))
        for n, call in enumerate(calls)
    ])  # fmt: skip
    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda records: any(
            r.json()["message_id"] == f"{buyer}-2" for r in records if r.key == buyer.encode()
        ),
        timeout_s=60,
    )
    mine = [r.json() for r in scored if r.key == buyer.encode()]
    assert all(m["likelihood"] is not None for m in mine)
    last = mine[-1]["likelihood"]
    assert last["model_version"] == version
    assert 0 < last["probability"] < 1
    reasons = [factor["description"] for factor in last["up"]]
    assert "did 'pricing calculator used'" in reasons
    assert mine[-1]["likelihood"]["probability"] > mine[0]["likelihood"]["probability"]
    # explain says the same
    explained = await pipeline.explain(buyer)
    assert explained["likelihood"]["model_version"] == version
    assert explained["likelihood"]["probability"] == last["probability"]

    # the stored leads get their likelihood in the background (the rescore sweep)
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM score.leads WHERE identified AND merged_into IS NULL "
            "AND (model_version IS DISTINCT FROM $1 OR likelihood IS NULL)",
            version,
        ),
        "every identified lead has its likelihood under the published model",
        until=lambda left: left == 0,
        timeout_s=120,
    )

    # the rules it proposes load, and simulate reports their effect on the stored history
    proposed = await api(pipeline, "GET", f"/v1/models/{version}/proposed-rules")
    assert proposed.status_code == 200, proposed.text
    rules = parse_rules(proposed.text, source="proposed")
    assert any(rule.id.startswith("learned-") for rule in rules.rules)
    simulated = await api(pipeline, "POST", "/v1/rules/simulate", content=proposed.content,
                          headers={"Content-Type": "application/yaml"})  # fmt: skip
    assert simulated.status_code == 200, simulated.text
    summary = simulated.json()
    assert summary["candidate_version"] == rules.version
    assert summary["leads"] >= len(world)
    assert summary["scores_changed"] > 0
    assert yaml.safe_load(proposed.text)["mql"] == rules_document["mql"]  # the person's lines

    # the MQL line on the likelihood: two leads whose scores both pass the score thresholds
    # (a VP's demo request); the one the model finds unlikely stays a lead
    likely, unlikely = "likely-buyer", "unlikely-buyer"
    demo: dict[str, Any] = {"type": "track", "event": "Demo Requested"}
    bought_list = {"import": {"list": "purchased-list"}}
    unlikely_calls: list[dict[str, Any]] = [
        {"type": "identify", "source": "import", "context": bought_list},
        {"type": "page", "name": "/careers", "properties": {"path": "/careers"}},
        {"type": "page", "name": "/careers", "properties": {"path": "/careers/sales"}},
        demo,
    ]
    produce(
        pipeline,
        EVENTS_ENRICHED,
        [
            (lead, fresh_event(lead, f"{lead}-{n}", now - timedelta(minutes=3 - n), call))
            for lead, lead_calls in ((likely, [*calls, demo]), (unlikely, unlikely_calls))
            for n, call in enumerate(lead_calls)
        ],
    )
    scored = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix),
        until=lambda records: {likely, unlikely} <= {
            r.json()["message_id"].rsplit("-", 1)[0] for r in records if r.json()["message_id"].endswith("-3")
        },
        timeout_s=60,
    )  # fmt: skip
    last = {
        lead: [r.json() for r in scored if r.key == lead.encode()][-1]
        for lead in (likely, unlikely)
    }
    assert all(last[lead]["score"]["total"] >= 80 for lead in last)  # the score thresholds pass
    assert (
        last[likely]["likelihood"]["probability"]
        >= 0.3
        > last[unlikely]["likelihood"]["probability"]
    )
    await eventually(
        lambda: db.fetch(
            "SELECT lead_id, stage FROM score.leads WHERE lead_id = ANY($1::text[]) ORDER BY 1",
            [likely, unlikely],
        ),
        "the likely buyer is an MQL, the unlikely one is not",
        until=lambda rows: (
            [(r["lead_id"], r["stage"]) for r in rows] == [(likely, "mql"), (unlikely, "lead")]
        ),
    )
    explained = await pipeline.explain(likely)
    assert "likelihood" in explained["stages"][-1]["reason"]


async def test_a_training_without_enough_outcomes_is_refused_with_what_is_missing(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("score")
    await load_world(pipeline, db, generate(150, seed=3))

    started = await api(pipeline, "POST", "/v1/models/train")
    assert started.status_code == 202, started.text
    busy = await api(pipeline, "POST", "/v1/models/train")  # one at a time
    rows = await eventually(
        lambda: db.fetch(
            "SELECT status, message FROM score.trainings WHERE run_id = $1",
            started.json()["run_id"],
        ),
        "the training finished",
        until=lambda rows: rows and rows[0]["status"] != "running",
        timeout_s=120,
    )
    assert rows[0]["status"] == "refused"
    assert "more leads with an outcome" in rows[0]["message"]
    assert busy.status_code in (409, 202)  # 409 unless the first was already done
    listed = (await api(pipeline, "GET", "/v1/models")).json()
    assert listed["versions"] == []
    assert listed["live"] is None
    assert (await api(pipeline, "POST", "/v1/models/latest/publish")).status_code == 404


def fresh_event(lead_id: str, message_id: str, at: datetime, call: dict[str, Any]) -> EnrichedEvent:
    return EnrichedEvent.model_validate(
        {
            "message_id": message_id,
            "lead_id": lead_id,
            "lead_version": 1,
            "source": "website",
            "timestamp": at,
            "received_at": at,
            "identified": True,
            "stage": "known",
            "profile": LeadProfile(
                email="dana@fin.example",
                title="VP of Finance",
                seniority="vp",
                job_function="finance",
            ),
            "firmographics": {
                "domain": "fin.example",
                "employee_count": 1200,
                "industry": "Financial Services",
            },
            **call,
        }
    )
