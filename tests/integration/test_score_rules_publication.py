"""Publishing scoring rules while score runs, on the real broker and PostgreSQL: two replicas
under load switch to a published version at their next batch, never scoring one batch with two
versions; and a version published while the stored leads are still being rescored onto the
previous one ends with every lead on the newest (the sweep starts a new pass, and late rescore
requests of the old pass rescore under the batch's live rules)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from confluent_kafka import Producer

from services.score.engine.ruleset import DEFAULT_RULES_FILE
from shared.topics import EVENTS_ENRICHED, LEADS_SCORED
from tests.fixtures.infra import PARTITIONS
from tests.fixtures.pipeline import Pipeline, PipelineFactory
from tests.fixtures.polling import eventually
from tests.integration.test_score_lifecycle import enriched

WEBINAR = "Webinar Attended"


def rules_with_webinar_points(points: int) -> str:
    """The default rules with every webinar worth `points`, uncapped: each event moves the
    score, so each is on `leads.scored` (the default counts two per lead, capped)."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = points
            rule["limit"] = {"times": 100_000}
            rule["group"] = "signals"  # no cap, no decay
    document["caps"].pop("behaviour")
    return yaml.safe_dump(document, sort_keys=False)


async def publish(pipeline: Pipeline, yaml_text: str, *, parent: str) -> str:
    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("score"),
        headers=pipeline.addresses.api_headers,
        timeout=30,
    ) as client:
        answer = await client.post(
            "/v1/rules/versions",
            json={"yaml": yaml_text, "parent": parent, "publish": True, "note": "test"},
        )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["version"]["version"])


class Traffic:
    """Webinar events for `leads` leads, round robin, at about `per_s` a second, each message id
    remembered with when it was sent."""

    def __init__(self, pipeline: Pipeline, *, leads: int, per_s: float) -> None:
        run = uuid.uuid4().hex[:6]
        self.leads = [f"lead-{run}-{n:03d}" for n in range(leads)]
        self.per_s = per_s
        self.sent: dict[str, float] = {}
        self._topic = EVENTS_ENRICHED.full_name(pipeline.prefix)
        self._producer = Producer({"bootstrap.servers": pipeline.addresses.kafka_bootstrap,
                                   "partitioner": "murmur2_random", "linger.ms": 5})  # fmt: skip
        self._stop = asyncio.Event()

    async def run(self) -> None:
        n, started = 0, time.monotonic()
        at = datetime.now(UTC)
        while not self._stop.is_set():
            lead = self.leads[n % len(self.leads)]
            message_id = f"{lead}-m{n}"
            value = enriched(lead, message_id, event=WEBINAR, at=at + timedelta(milliseconds=n))
            self._producer.produce(self._topic, value=value, key=lead.encode())
            self._producer.poll(0)
            self.sent[message_id] = time.monotonic()
            n += 1
            ahead = n / self.per_s - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        assert self._producer.flush(10) == 0

    def stop(self) -> None:
        self._stop.set()


async def mixed_transactions(db: asyncpg.Connection) -> tuple[int, set[str]]:
    """Of the ledger and stage-change rows now stored: how many transactions wrote rows of more
    than one rules version (rows written together share their `xmin`), and which versions the
    rows carry."""
    rows = await db.fetch(
        """
        SELECT xmin::text AS tx, rule_version FROM score.ledger
        UNION ALL
        SELECT xmin::text, rule_version FROM score.stage_changes WHERE rule_version IS NOT NULL
        """
    )
    versions_by_tx: dict[str, set[str]] = {}
    for row in rows:
        versions_by_tx.setdefault(row["tx"], set()).add(row["rule_version"])
    mixed = sum(1 for versions in versions_by_tx.values() if len(versions) > 1)
    return mixed, {row["rule_version"] for row in rows}


@pytest.mark.slow  # about 20 s: `make test-slow`
@pytest.mark.timeout(300)
async def test_two_replicas_under_load_switch_versions_without_a_batch_scored_by_both(
    pipeline_factory: PipelineFactory, db: asyncpg.Connection
) -> None:
    first, second = pipeline_factory(), pipeline_factory()
    await first.start("score")
    await second.start("score")
    traffic = Traffic(first, leads=60, per_s=150)
    sending = asyncio.create_task(traffic.run())
    await asyncio.sleep(3)

    published_at = time.monotonic()
    version = await publish(first, rules_with_webinar_points(35), parent="1")
    assert version == "2"
    # Watch the stored rows while the replicas switch: both versions side by side, never in
    # one transaction (the rescore sweep replaces version 1's rows as it goes).
    seen_versions: set[str] = set()
    mixed_at_most = 0
    watch_until = time.monotonic() + 4
    while time.monotonic() < watch_until:
        mixed, versions = await mixed_transactions(db)
        mixed_at_most = max(mixed_at_most, mixed)
        seen_versions |= versions
        await asyncio.sleep(0.2)
    traffic.stop()
    await sending

    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.history"),
        "every event scored",
        until=lambda count: count == len(traffic.sent),
        timeout_s=90,
    )
    # a message whose score did not move is not on leads.scored (version 1 counts two
    # webinars per lead; version 2 every one)
    records = await first.read_all(LEADS_SCORED.full_name(first.prefix))
    scored = {r.json()["message_id"]: (r.partition, r.json()) for r in records}
    mixed, _ = await mixed_transactions(db)

    assert (mixed_at_most, mixed) == (0, 0), "a batch scored with two rules versions"
    assert seen_versions == {"1", "2"}
    by_version = {value["rule_version"] for _, value in scored.values()}
    assert by_version == {"1", "2"}
    # every event sent well after the publication, on every partition (so by both replicas),
    # was scored with version 2 and its points
    late = [m for m, sent in traffic.sent.items() if sent > published_at + 2]
    assert len(late) > 100
    assert set(late) <= scored.keys()
    assert {scored[m][1]["rule_version"] for m in late} == {"2"}
    assert {scored[m][0] for m in late} == set(range(PARTITIONS))
    lines = await db.fetch(
        "SELECT rule_version, points, count(*) AS n FROM score.ledger "
        "WHERE rule_id = 'webinar-attended' AND message_id = ANY($1) "
        "GROUP BY rule_version, points",
        late,
    )
    assert [(r["rule_version"], r["points"], r["n"]) for r in lines] == [("2", 35, len(late))]


@pytest.mark.slow  # about 13 s: `make test-slow` (make test stays within 20 minutes)
@pytest.mark.timeout(300)
async def test_a_version_published_during_the_rescore_of_the_previous_one_wins(
    pipeline: Pipeline, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep rescores 5 leads at a time: version 3 is published while leads are still being
    rescored onto 2. The sweep starts a new pass for 3; every lead ends on 3, none on 2."""
    monkeypatch.setenv("LEADFLOW_SCORE_SWEEP_BATCH", "5")
    monkeypatch.setenv("LEADFLOW_SCORE_RESCORE_INTERVAL_S", "0.5")
    await pipeline.start("score")
    traffic = Traffic(pipeline, leads=120, per_s=400)
    sending = asyncio.create_task(traffic.run())
    await asyncio.sleep(0.5)
    traffic.stop()
    await sending
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.history"),
        "every event scored",
        until=lambda count: count == len(traffic.sent),
        timeout_s=60,
    )

    async with httpx.AsyncClient(
        base_url=pipeline.addresses.api_url("score"), headers=pipeline.addresses.api_headers
    ) as client:

        async def progress() -> dict[str, Any]:
            return dict((await client.get("/v1/rules/rescore")).json())

        assert await publish(pipeline, rules_with_webinar_points(35), parent="1") == "2"
        during = await eventually(
            progress,
            "the rescore onto version 2 under way",
            until=lambda p: p["rule_version"] == "2" and p["pass"]["rescored"] >= 10,
        )
        assert not during["done"]
        on_two = await db.fetchval("SELECT count(*) FROM score.leads WHERE rule_version = '2'")
        assert 0 < on_two < len(traffic.leads)

        assert await publish(pipeline, rules_with_webinar_points(50), parent="2") == "3"
        done = await eventually(
            progress,
            "the rescore onto version 3 done",
            until=lambda p: p["rule_version"] == "3" and p["done"],
            timeout_s=120,
        )
    assert done["to_rescore"] == 0
    versions = await db.fetch(
        "SELECT rule_version, count(*) AS leads FROM score.leads GROUP BY rule_version"
    )
    assert {row["rule_version"]: row["leads"] for row in versions} == {"3": len(traffic.leads)}
    lines = await db.fetch("SELECT DISTINCT rule_version, points FROM score.ledger "
                           "WHERE rule_id = 'webinar-attended'")  # fmt: skip
    assert [(row["rule_version"], row["points"]) for row in lines] == [("3", 50)]
