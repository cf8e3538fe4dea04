"""score throughput and the rescoring rate.

- Live scoring: enriched events in, scores and stage changes out, through the real broker and
  PostgreSQL with the service's handler and consumer runner (batches of 500, one consumer on 4
  partitions). Per lead: an identify with a VP profile and firmographics, page views, a demo or
  a webinar: every lead is scored several times and a share crosses MQL. The clock runs from the
  first stored batch until every message is in `score.history` and the outbox is empty.
- Rescoring: the same stored histories replayed under the rules (`rescoring.replay`), the work a
  simulation or an applied rule change does per event; events/s of pure Python, one core.
- Applied rule change: the stored leads of the live run rescored under a new rules version the
  way the service does it (the rescore sweep asks through `score.commands`, the consumer
  replays each lead's history, replaces its ledger and emits the changes), with the service's
  default sweep settings; leads/s from the first lead rescored until the last one is and the
  outbox is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from pydantic import SecretStr

from bench.figures import Figure, median
from bench.infra import BenchInfra, consume_until_handled, produce_all, wait_until_handled
from services.score.config import ScoreSettings
from services.score.engine.conditions import facts_of
from services.score.engine.rescoring import HistoryItem, replay
from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet, load_rules
from services.score.handler import ScoreHandler
from services.score.rules_versions import RULES, pinned
from services.score.sweep import RescoreSweep
from shared.commands import CommandSender
from shared.companions import Companion, run_companion
from shared.consumer import ConsumerRunner
from shared.contracts import EnrichedEvent
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import CRM_FEEDBACK, EVENTS_ENRICHED, SCORE_COMMANDS

SECTION = "score"
LEADS = 2_000
RUNS = int(__import__("os").environ.get("BENCH_RUNS", "2"))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TITLES = [("vp", "sales"), ("director", "it"), ("manager", "marketing"), ("student/intern", None)]


def traffic(rng: random.Random) -> list[EnrichedEvent]:
    events: list[EnrichedEvent] = []
    for lead in range(LEADS):
        lead_id = f"lead-{lead}-{uuid.uuid4().hex[:6]}"
        seniority, function = rng.choice(TITLES)
        employees = rng.choice([8, 120, 850, 3200, 12000])
        base = {
            "lead_id": lead_id,
            "source": "website",
            "identified": True,
            "stage": "known",
            "profile": {"email": f"p{lead}@company{lead % 300}.io", "seniority": seniority,
                        "job_function": function},
            "firmographics": {"domain": f"company{lead % 300}.io", "employee_count": employees,
                              "industry": rng.choice(["Software", "Energy", "Retail"]),
                              "country": "US"},
        }  # fmt: skip
        calls: list[dict[str, Any]] = [{"type": "identify"}]
        calls += [{"type": "page", "properties": {"path": p}} for p in ("/", "/pricing", "/docs")]
        calls.append({"type": "track", "event": rng.choice(["Demo Requested", "Webinar Attended"])})
        for index, call in enumerate(calls):
            at = T0 + timedelta(seconds=lead, milliseconds=index)
            events.append(
                EnrichedEvent.model_validate(
                    {
                        **base,
                        **call,
                        "message_id": str(uuid.uuid4()),
                        "timestamp": at,
                        "received_at": at,
                    }
                )
            )
    return events


async def run(infra: BenchInfra) -> list[Figure]:
    rates: list[float] = []
    rescoring: list[float] = []
    applied: list[float] = []
    count = 0
    for seed in range(RUNS):
        events = traffic(random.Random(seed))
        count = len(events)
        rate, url, kafka = await _live(infra, events)
        rates.append(rate)
        rescoring.append(_rescoring_rate(events))
        applied.append(await _applied_rule_change(url, kafka))
    return [
        Figure(
            SECTION,
            f"score events.enriched -> leads.scored/lifecycle ({count} events, batch 500)",
            round(median(rates)),
            "events/s",
        ),
        Figure(
            SECTION,
            "rescoring (history replayed under the rules)",
            round(median(rescoring)),
            "events/s",
        ),
        Figure(
            SECTION,
            f"applied rule change: sweep -> score.commands -> rescore ({LEADS} leads,"
            f" {count // LEADS} events each)",
            round(median(applied)),
            "leads/s",
        ),
    ]


def _rescoring_rate(events: list[EnrichedEvent]) -> float:
    rules = load_rules(DEFAULT_RULES_FILE)
    histories: dict[str, list[HistoryItem]] = {}
    for event in events:
        histories.setdefault(event.lead_id, []).append(
            HistoryItem(
                event.message_id, event.timestamp, facts_of(event), event.type != "identify"
            )
        )
    started = time.perf_counter()
    for items in histories.values():
        replay(rules, items)
    return len(events) / (time.perf_counter() - started)


async def _live(infra: BenchInfra, events: list[EnrichedEvent]) -> tuple[float, str, KafkaSettings]:
    """events/s, and the database and topics it leaves scored (for the rule change)."""
    url = await infra.fresh_database()
    prefix = await infra.fresh_topic_prefix()
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    await produce_all(kafka, EVENTS_ENRICHED, [(e.lead_id, e) for e in events])
    rate = await consume_until_handled(
        url=url,
        kafka=kafka,
        service="score",
        subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
        handler=ScoreHandler(pinned(load_rules(DEFAULT_RULES_FILE))),
        handled_sql="SELECT count(*) FROM score.history",
        outbox_sql="SELECT count(*) FROM score.outbox",
        expected=len(events),
    )
    return rate, url, kafka


async def _applied_rule_change(url: str, kafka: KafkaSettings) -> float:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    for rule in document["rules"]:
        if rule["id"] == "webinar-attended":
            rule["points"] = 35
    database = DatabaseSettings(url=SecretStr(url))
    settings = ScoreSettings(database=database, kafka=kafka)  # the service's sweep defaults
    engine = create_engine(database, application_name="bench-score-rescore")
    sessions = create_sessionmaker(engine)
    # published as people publish a change: the handler and the sweep follow the live version
    async with unit_of_work(sessions) as session:
        saved = await RULES.save(session, document=document, author="bench", note="webinars x1.75")
        await RULES.publish(session, saved.version, by="bench")
    rules = RuleSet.model_validate(saved.document)
    runner = ConsumerRunner(
        service="score",
        subscriptions=[EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS],
        handler=ScoreHandler(RULES),
        sessions=sessions,
        schema="score",
        kafka=kafka,
        consumer=ConsumerSettings(max_batch_records=500),
    )
    commands = CommandSender(kafka, client_id="bench-score-rescore")
    sweep = RescoreSweep(under="rules")
    consuming = asyncio.create_task(runner.run())
    sweeping = asyncio.create_task(
        run_companion(
            Companion(
                name="rescore sweep",
                round=lambda: sweep.step(sessions=sessions, commands=commands, settings=settings),
                retry_after_s=settings.rescore_interval_s,
            )
        )
    )
    try:
        handled, elapsed = await wait_until_handled(
            url,
            handled_sql=f"SELECT count(*) FROM score.leads WHERE rule_version = '{rules.version}'",
            outbox_sql="SELECT count(*) FROM score.outbox",
            expected=LEADS,
        )
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
        runner.request_stop()
        await consuming
        await commands.close()
        await engine.dispose()
    return handled / elapsed
