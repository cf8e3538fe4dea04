"""Scale: score and route with many leads already in PostgreSQL; per-event cost must stay flat.

For each size (10k and 1M leads) a fresh database is seeded inside PostgreSQL
(`generate_series`: score's leads with three ledger lines and three history items each and a
stage change, router's decisions and suppressions), then the same traffic is consumed by the
service's own handler and consumer runner (batches of 500, 4 partitions):
- score: the score bench's enriched events for new leads, plus page views of seeded leads
  (their rows, ledgers and histories are read on the hot path);
- router: lifecycle changes (MQLs for sales, known/lead for nurture) for new and seeded leads.
Throughput at both sizes is printed side by side; a hot-path query that scanned a table would
show as a large drop at 1M.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from pydantic import BaseModel

from bench.figures import Figure, at_least
from bench.infra import BenchInfra, consume_until_handled, produce_all
from bench.score import traffic as score_traffic
from services.router.handler import RouterHandler
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.handler import ScoreHandler
from shared.consumer import Handler
from shared.contracts import (
    Consent,
    EnrichedEvent,
    LeadProfile,
    LifecycleChanged,
    Score,
    Stage,
)
from shared.settings import KafkaSettings
from shared.topics import (
    CRM_FEEDBACK,
    EVENTS_ENRICHED,
    LEADS_LIFECYCLE,
    ROUTER_COMMANDS,
    SCORE_COMMANDS,
    Topic,
)

SECTION = "scale"
SIZES = (10_000, int(os.environ.get("BENCH_SCALE_LEADS", "1000000")))
SEEDED_SHARE = 0.2  # of the measured messages, those for leads already in the database
ROUTER_CHANGES = 4_000
FLAT_GOAL = 0.8
APPLIED_SQL = {
    "score": "SELECT coalesce(sum(next_offset), 0)::bigint FROM score.consumer_offsets",
    "router": "SELECT coalesce(sum(next_offset), 0)::bigint FROM router.consumer_offsets",
}
OUTBOX_SQL = {
    "score": "SELECT count(*) FROM score.outbox",
    "router": "SELECT count(*) FROM router.outbox",
}  # throughput at 1M leads at least this share of throughput at 10k

SEED_SCORE = (
    """
    INSERT INTO score.leads (lead_id, stage, fit, behaviour, engaged, email, identified, total,
                             grade, band, qualifies, rule_version, as_of, profile_version, profile)
    SELECT 'seed-' || g, 'lead', 20, 15, true, 'seed' || g || '@seed.example', true, 35, 'C', 3,
           false, $2, now(), 0, '{}'::jsonb
      FROM generate_series(1, $1) AS g
    """,
    """
    INSERT INTO score.ledger (lead_id, message_id, rule_id, points, rule_version, event_time,
                              grp, kind, requested, reason)
    SELECT 'seed-' || g, 'seed-msg-' || g || '-' || r, 'content-download', 5, $2, now(),
           'engagement', 'behaviour', 5, 'seeded'
      FROM generate_series(1, $1) AS g, generate_series(1, 3) AS r
    """,
    """
    INSERT INTO score.history (lead_id, message_id, at, behaviour, facts)
    SELECT 'seed-' || g, 'seed-msg-' || g || '-' || r, now(), true, '{}'::jsonb
      FROM generate_series(1, $1) AS g, generate_series(1, 3) AS r
    """,
    """
    INSERT INTO score.stage_changes (transition_id, lead_id, from_stage, to_stage, reason, at)
    SELECT 'seed-' || g || ':lead', 'seed-' || g, 'known', 'lead', 'seeded', now()
      FROM generate_series(1, $1) AS g
    """,
)
SEED_ROUTER = (
    """
    INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, track, strategy,
                                  email, decided_at, closed_at, closed_reason, payload)
    SELECT 'seed-d-' || g, 'seed-' || g || ':lead', 'seed-' || g, 'nurture', 'general-nurture',
           'nurture_track', 'seed' || g || '@seed.example', now(), now(), 'seeded', '{}'::jsonb
      FROM generate_series(1, $1) AS g
    """,
    """
    INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
    SELECT 'seed-' || g || ':known', 'seed-' || g, 'seed' || g || '@seed.example', 'known',
           'seeded'
      FROM generate_series(1, $1) AS g
    """,
)


async def run(infra: BenchInfra) -> list[Figure]:
    version = load_rules(DEFAULT_RULES_FILE).version
    score_rates: dict[int, float] = {}
    router_rates: dict[int, float] = {}
    for size in SIZES:
        url = await infra.fresh_database()
        seeding = await _seed(url, size=size, version=version)
        print(f"[bench] scale: seeded {size:,} leads in {seeding:.0f}s", flush=True)
        score_rates[size] = await _score_rate(infra, url, size=size)
        router_rates[size] = await _router_rate(infra, url, size=size)
    small, large = SIZES
    figures = []
    for service, rates, unit in (
        ("score", score_rates, "events/s"),
        ("router", router_rates, "changes/s"),
    ):
        figures += [
            Figure(SECTION, f"{service} with {small:,} leads stored", rates[small], unit),
            Figure(SECTION, f"{service} with {large:,} leads stored", rates[large], unit),
            at_least(
                SECTION,
                f"{service} at {large:,} / at {small:,}",
                rates[large] / rates[small],
                "ratio",
                FLAT_GOAL,
            ),
        ]
    return figures


async def _seed(url: str, *, size: int, version: str) -> float:
    started = time.monotonic()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        for statement in (*SEED_SCORE, *SEED_ROUTER):
            arguments = (size, version) if "$2" in statement else (size,)
            await connection.execute(statement, *arguments)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.monotonic() - started


async def _score_rate(infra: BenchInfra, url: str, *, size: int) -> float:
    rng = random.Random(size)
    events = score_traffic(rng)
    seeded = int(len(events) * SEEDED_SHARE)
    at = datetime.now(UTC)
    events += [
        EnrichedEvent(
            message_id=f"seed-view-{uuid.uuid4().hex}",
            lead_id=f"seed-{rng.randint(1, size)}",
            type="page",
            source="bench",
            timestamp=at,
            received_at=at,
            identified=True,
            stage="known",
            properties={"path": "/pricing"},
        )
        for _ in range(seeded)
    ]
    return await _consume(
        infra,
        url,
        events,
        topic=EVENTS_ENRICHED,
        service="score",
        handler=ScoreHandler(load_rules(DEFAULT_RULES_FILE)),
        subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
    )


async def _router_rate(infra: BenchInfra, url: str, *, size: int) -> float:
    rng = random.Random(size)
    at = datetime.now(UTC)
    changes = []
    for n in range(ROUTER_CHANGES):
        seeded = rng.random() < SEEDED_SHARE
        lead = f"seed-{rng.randint(1, size)}" if seeded else f"new-{n}-{uuid.uuid4().hex[:6]}"
        to_stage = Stage.MQL if rng.random() < 0.3 else rng.choice([Stage.KNOWN, Stage.LEAD])
        changes.append(
            LifecycleChanged(
                transition_id=f"{lead}:{to_stage.value}:bench-{n}",
                lead_id=lead,
                from_stage=Stage.ANONYMOUS,
                to_stage=to_stage,
                reason="bench",
                at=at,
                received_at=at,
                profile=LeadProfile(email=f"{lead}@bench.example", country="FR"),
                consent=Consent(),
                score=Score(fit=30, behaviour=60, total=90, grade="B", band=2, priority="B2"),
            )
        )
    return await _consume(
        infra,
        url,
        changes,
        topic=LEADS_LIFECYCLE,
        service="router",
        handler=RouterHandler(load_routing(DEFAULT_ROUTING_FILE), sla_recheck=timedelta(minutes=5)),
        subscriptions=[LEADS_LIFECYCLE, CRM_FEEDBACK, ROUTER_COMMANDS],
    )


def _lead_of(message: BaseModel) -> str:
    assert isinstance(message, EnrichedEvent | LifecycleChanged)
    return message.lead_id


async def _consume(
    infra: BenchInfra,
    url: str,
    messages: Sequence[BaseModel],
    *,
    topic: Topic,
    service: str,
    handler: Handler,
    subscriptions: list[Topic],
) -> float:
    """Messages/s the service's consumer applies, from its first stored batch until all are
    applied and its outbox is empty."""
    prefix = await infra.fresh_topic_prefix()
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    await produce_all(kafka, topic, [(_lead_of(m), m) for m in messages])
    return await consume_until_handled(
        url=url,
        kafka=kafka,
        service=service,
        subscriptions=subscriptions,
        handler=handler,
        handled_sql=APPLIED_SQL[service],
        outbox_sql=OUTBOX_SQL[service],
        expected=len(messages),
    )
