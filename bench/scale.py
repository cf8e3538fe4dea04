"""Scale: score and route with a year of use in PostgreSQL; per-event cost must stay flat.

For each size (10k and 1M leads) a fresh database is seeded inside PostgreSQL
(`generate_series`) with what a year of real use leaves:
- score: leads in every open stage (60% known, 30% lead, 10% mql) with a profile, six ledger
  lines and eight history items each (facts as the engine keeps them) spread over the year,
  and their stage changes;
- router: each lead's nurture decision (closed when the lead moved on; open for the 30% in
  `lead`), an sdr decision for each mql (90% closed by CRM feedback, 10% open with an SLA timer
  due later), a breach for 2% of them, suppressions for 3% of leads, and a year of daily loads
  for every rep of the default routing file.
Then the same traffic is consumed, `BENCH_RUNS` times per size (default 3), by the service's
own handler and consumer runner (batches of 500, 4 partitions), on fresh topics each run:
- score: the score bench's enriched events for new leads, plus page views of seeded leads,
  exactly SEEDED_SHARE of all messages (their rows, ledgers and histories are read on the hot
  path);
- router: lifecycle changes (MQLs for sales, known/lead for nurture), exactly SEEDED_SHARE of
  them for seeded leads (closing their open decisions, locking teams, reading loads).
A run that dead-letters anything fails the section: the rate is read from stored offsets,
which advance for a dead-lettered record too. Each figure is the median of the runs, each
run's beside it; a hot-path query that scanned a table would show as a large drop at 1M.
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

from bench.figures import Figure, at_least, median
from bench.infra import BenchInfra, consume_until_handled, dead_letters, produce_all
from bench.score import traffic as score_traffic
from services.router import routing_versions
from services.router.handler import RouterHandler
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from services.score.engine.ruleset import DEFAULT_RULES_FILE, load_rules
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
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
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
FLAT_GOAL = 0.8  # throughput at 1M leads at least this share of throughput at 10k
# $1: the run's topic prefix and '%' (every run of a size shares the seeded database).
APPLIED_SQL = {
    "score": "SELECT coalesce(sum(next_offset), 0)::bigint FROM score.consumer_offsets"
    " WHERE topic LIKE $1",
    "router": "SELECT coalesce(sum(next_offset), 0)::bigint FROM router.consumer_offsets"
    " WHERE topic LIKE $1",
}
OUTBOX_SQL = {
    "score": "SELECT count(*) FROM score.outbox WHERE topic LIKE $1",
    "router": "SELECT count(*) FROM router.outbox WHERE topic LIKE $1",
}

# (statement, the parameters it takes: leads, version (of the rules), reps (every rep's id)).
# Lead g's stage: g % 10 in 0-5 known, 6-8 lead, 9 mql.
SEED_SCORE = (
    (
        """
        INSERT INTO score.leads (lead_id, stage, fit, behaviour, engaged, email, identified, total,
                                 grade, band, qualifies, rule_version, as_of, profile_version, profile)
        SELECT 'seed-' || g, CASE WHEN g % 10 < 6 THEN 'known' WHEN g % 10 < 9 THEN 'lead'
                                  ELSE 'mql' END,
               10 + g % 30, 5 + g % 50, true, 'seed' || g || '@corp' || g % 5000 || '.example',
               true, 15 + g % 30 + g % 50, 'C', 3, g % 10 = 9, $2,
               now() - make_interval(days => g % 365), 3,
               jsonb_build_object('email', 'seed' || g || '@corp' || g % 5000 || '.example',
                                  'first_name', 'Lee', 'last_name', 'Ray', 'title', 'Sales Manager',
                                  'seniority', 'manager', 'job_function', 'sales',
                                  'company', 'Corp ' || g % 5000, 'country', 'FR')
          FROM generate_series(1, $1) AS g
        """,
        ("leads", "version"),
    ),
    (
        """
        INSERT INTO score.ledger (lead_id, message_id, rule_id, points, rule_version, event_time,
                                  grp, kind, requested, reason)
        SELECT 'seed-' || g, 'seed-msg-' || g || '-' || r,
               (ARRAY['product-pages', 'pricing-page', 'content-download', 'email-opened',
                      'webinar-attended', 'email-clicked'])[r],
               (ARRAY[2, 15, 10, 1, 20, 3])[r], $2,
               now() - make_interval(days => (g + 40 * r) % 365),
               (ARRAY['engagement', 'intent', 'engagement', 'engagement', 'engagement',
                      'engagement'])[r],
               'behaviour', (ARRAY[2, 15, 10, 1, 20, 3])[r], 'seeded'
          FROM generate_series(1, $1) AS g, generate_series(1, 6) AS r
        """,
        ("leads", "version"),
    ),
    (
        """
        INSERT INTO score.history (lead_id, message_id, at, behaviour, facts)
        SELECT 'seed-' || g, 'seed-msg-' || g || '-' || r,
               now() - make_interval(days => (g + 40 * r) % 365), true,
               jsonb_build_object('type', 'page', 'event', NULL,
                                  'properties.path', (ARRAY['/', '/pricing', '/docs', '/blog',
                                                      '/customers', '/product', '/about',
                                                      '/integrations'])[r],
                                  'context.page.url', 'https://lumenboard.io/p' || r,
                                  'context.ip', '203.0.113.' || g % 250,
                                  'context.userAgent', 'Mozilla/5.0 (X11; Linux x86_64)')
          FROM generate_series(1, $1) AS g, generate_series(1, 8) AS r
        """,
        ("leads",),
    ),
    (
        """
        INSERT INTO score.stage_changes (transition_id, lead_id, from_stage, to_stage, reason, at)
        SELECT 'seed-' || g || ':' || s.to_stage, 'seed-' || g, s.from_stage, s.to_stage, 'seeded',
               now() - make_interval(days => g % 365)
          FROM generate_series(1, $1) AS g,
               (VALUES (0, 'anonymous', 'known'), (6, 'known', 'lead'), (9, 'lead', 'mql'))
                   AS s (from_rank, from_stage, to_stage)
         WHERE g % 10 >= s.from_rank
        """,
        ("leads",),
    ),
)
SEED_ROUTER = (
    (
        """
        INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, track, strategy,
                                      email, decided_at, closed_at, closed_reason, payload)
        SELECT 'seed-n-' || g || '-' || s.stage, 'seed-' || g || ':' || s.stage, 'seed-' || g,
               'nurture', 'general-nurture', 'nurture_track',
               'seed' || g || '@corp' || g % 5000 || '.example',
               now() - make_interval(days => g % 365),
               CASE WHEN s.current THEN NULL ELSE now() - make_interval(days => g % 365) END,
               CASE WHEN s.current THEN NULL ELSE 'lead changed stage' END,
               jsonb_build_object('schema_version', 1, 'lead_id', 'seed-' || g, 'route', 'nurture',
                                  'email', 'seed' || g || '@corp' || g % 5000 || '.example',
                                  'name', 'Lee Ray', 'company', 'Corp ' || g % 5000,
                                  'stage', s.stage, 'track', 'general-nurture',
                                  'strategy', 'nurture_track',
                                  'reasons', jsonb_build_array('stage ' || s.stage),
                                  'score', jsonb_build_object('fit', 20, 'behaviour', 15,
                                                              'total', 35, 'grade', 'C',
                                                              'band', 3, 'priority', 'C3'))
          FROM generate_series(1, $1) AS g,
               LATERAL (VALUES ('known', g % 10 < 6), ('lead', g % 10 BETWEEN 6 AND 8))
                   AS s (stage, current)
         WHERE s.stage = 'known' OR g % 10 >= 6
        """,
        ("leads",),
    ),
    (
        """
        INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, owner_id, strategy,
                                      email, teams, decided_at, sla_due_at, closed_at,
                                      closed_reason, next_check_at, payload)
        SELECT 'seed-s-' || g, 'seed-' || g || ':mql', 'seed-' || g, 'sdr', ($2::text[])[1 + g % 7],
               'round_robin', 'seed' || g || '@corp' || g % 5000 || '.example',
               ARRAY['sdr-emea', 'sdr-inbound'], at.decided, at.decided + interval '1 hour',
               CASE WHEN NOT at.open THEN at.decided + interval '20 minutes' END,
               CASE WHEN NOT at.open THEN 'crm: accepted' END,
               CASE WHEN at.open THEN at.decided + interval '1 hour' END,
               jsonb_build_object('schema_version', 1, 'lead_id', 'seed-' || g, 'route', 'sdr',
                                  'email', 'seed' || g || '@corp' || g % 5000 || '.example',
                                  'name', 'Lee Ray', 'company', 'Corp ' || g % 5000,
                                  'stage', 'mql', 'strategy', 'round_robin',
                                  'reasons', jsonb_build_array('total score >= MQL threshold'),
                                  'score', jsonb_build_object('fit', 30, 'behaviour', 60,
                                                              'total', 90, 'grade', 'B',
                                                              'band', 2, 'priority', 'B2'))
          FROM generate_series(1, $1) AS g,
               LATERAL (SELECT g % 100 = 9 AS open,
                               CASE WHEN g % 100 = 9 THEN now()
                                    ELSE now() - make_interval(days => g % 365) END AS decided) AS at
         WHERE g % 10 = 9
        """,
        ("leads", "reps"),
    ),
    (
        """
        INSERT INTO router.sla_breaches (decision_id, lead_id, owner_id, due_at, breached_at)
        SELECT decision_id, lead_id, owner_id, sla_due_at, sla_due_at + interval '1 minute'
          FROM router.decisions
         WHERE route = 'sdr' AND closed_at IS NOT NULL AND hashtext(decision_id) % 50 = 0
        """,
        (),
    ),
    (
        """
        INSERT INTO router.suppressions (transition_id, lead_id, email, stage, reason)
        SELECT 'seed-' || g || ':suppressed', 'seed-' || g,
               'seed' || g || '@corp' || g % 5000 || '.example', 'known', 'opted out (seeded)'
          FROM generate_series(1, $1) AS g
         WHERE g % 100 < 3
        """,
        ("leads",),
    ),
    (
        """
        INSERT INTO router.rep_loads (rep_id, day, assigned, last_assigned_at)
        SELECT rep, current_date - d, 1 + (d + length(rep)) % 30,
               (current_date - d)::timestamptz + interval '15 hours'
          FROM unnest($1::text[]) AS rep, generate_series(1, 365) AS d
        """,
        ("reps",),
    ),
)


async def run(infra: BenchInfra) -> list[Figure]:
    version = load_rules(DEFAULT_RULES_FILE).version
    reps = [rep.id for team in load_routing(DEFAULT_ROUTING_FILE).teams for rep in team.reps]
    score_runs: dict[int, list[float]] = {}
    router_runs: dict[int, list[float]] = {}
    for size in SIZES:
        url = await infra.fresh_database()
        seeding = await _seed(url, size=size, version=version, reps=reps)
        print(f"[bench] scale: seeded {size:,} leads in {seeding:.0f}s", flush=True)
        for run in range(RUNS):
            score_runs.setdefault(size, []).append(
                await _score_rate(infra, url, size=size, run=run)
            )
            router_runs.setdefault(size, []).append(
                await _router_rate(infra, url, size=size, run=run)
            )
            print(
                f"[bench] scale: {size:,} leads, run {run}: score"
                f" {score_runs[size][-1]:,.0f} events/s, router {router_runs[size][-1]:,.0f}"
                " changes/s",
                flush=True,
            )
    small, large = SIZES
    figures = []
    for service, runs, unit in (
        ("score", score_runs, "events/s"),
        ("router", router_runs, "changes/s"),
    ):
        rates = {size: median(values) for size, values in runs.items()}
        figures += [
            Figure(
                SECTION,
                f"{service} with {small:,} leads stored",
                rates[small],
                unit,
                runs=runs[small],
            ),
            Figure(
                SECTION,
                f"{service} with {large:,} leads stored",
                rates[large],
                unit,
                runs=runs[large],
            ),
            at_least(
                SECTION,
                f"{service} at {large:,} / at {small:,}",
                rates[large] / rates[small],
                "ratio",
                FLAT_GOAL,
            ),
        ]
    return figures


async def _seed(url: str, *, size: int, version: str, reps: list[str]) -> float:
    started = time.monotonic()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        parameters = {"leads": size, "version": version, "reps": reps}
        for statement, names in (*SEED_SCORE, *SEED_ROUTER):
            await connection.execute(statement, *(parameters[name] for name in names))
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.monotonic() - started


async def _score_rate(infra: BenchInfra, url: str, *, size: int, run: int) -> float:
    rng = random.Random(size * 10 + run)
    events = score_traffic(rng)
    # SEEDED_SHARE of all messages: seeded / (new + seeded) = share.
    seeded = round(len(events) * SEEDED_SHARE / (1 - SEEDED_SHARE))
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
        handler=ScoreHandler(pinned(load_rules(DEFAULT_RULES_FILE))),
        subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
    )


async def _router_rate(infra: BenchInfra, url: str, *, size: int, run: int) -> float:
    rng = random.Random(size * 10 + run)
    at = datetime.now(UTC)
    changes = []
    seeded_changes = set(rng.sample(range(ROUTER_CHANGES), round(ROUTER_CHANGES * SEEDED_SHARE)))
    for n in range(ROUTER_CHANGES):
        seeded = n in seeded_changes
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
        handler=RouterHandler(
            routing_versions.pinned(load_routing(DEFAULT_ROUTING_FILE)),
            sla_recheck=timedelta(minutes=5),
            backfill_horizon=timedelta(hours=72),
        ),
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
    applied and its outbox is empty. Raises when it dead-lettered anything: a dead letter
    advances the stored offsets too, so the rate would count what was not applied."""
    prefix = await infra.fresh_topic_prefix()
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    await produce_all(kafka, topic, [(_lead_of(m), m) for m in messages])
    rate = await consume_until_handled(
        url=url,
        kafka=kafka,
        service=service,
        subscriptions=subscriptions,
        handler=handler,
        handled_sql=APPLIED_SQL[service],
        outbox_sql=OUTBOX_SQL[service],
        expected=len(messages),
        arguments=(f"{prefix}%",),
    )
    if letters := await dead_letters(infra.kafka_bootstrap, prefix):
        raise RuntimeError(
            f"scale: {service} dead-lettered {letters} of {len(messages)} messages"
            " (see its dead-letter topics); its rate would count them as applied"
        )
    return rate
