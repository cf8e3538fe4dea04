"""The console: its read model's throughput, and its pages' times with a year of a million leads.

1. What the pipeline gives the console: the four services of `bench pipeline` run on a fresh
   stack, the website traffic of bench/traffic.py is posted at RATIO_LOAD events/s for
   RATIO_S seconds, and once the stack has drained the records on the console's five topics
   are counted. Their ratio to the events ingest acknowledged, times the pipeline's sustained
   rate (SUSTAINED_EVENTS, bench/RESULTS.md), is what the read model must keep up with.
   (No model is published in the bench, so no message is sent for a likelihood alone, and no
   CRM reports: a real CRM adds a few per MQL.)
2. Read-model throughput: a mix per lead (values from shared/contracts/examples, changed per
   lead): 1-3 stage changes, 3-6 score changes, for most a routing decision (sdr for MQLs,
   else nurture), and for 70% of MQLs a CRM acceptance (a fifth of them naming the lead by
   email only); a tenth of the leads change grade on the way. Every score change is for an
   identified lead the console keeps (the pipeline's many score changes of anonymous visitors,
   which the console only looks up and drops, are left out: the mix costs more per message
   than the pipeline's). In two waves on one database, each produced to fresh topics before
   `python -m services.console run` starts on them as its own process (the runner's default
   batches of 500): first each lead's first stage change, then all the rest. A live console
   sees a lead's first stage change before its later score changes; read concurrently from one
   backlog, most score changes came before it and were dropped (13% of the leads held their
   last score), so the waves keep that order. Each wave's clock runs from the console's first
   stored batch until every offset is stored (`bench.infra.wait_until_handled`); the figure is
   all messages over both clocks. Also the console's and PostgreSQL's CPU per message, from
   the moment each process was ready.
3. Page times at a million leads: a fresh database's `console` tables are seeded inside
   PostgreSQL (`generate_series`) as the handler would leave them after a year: 1M leads
   entered evenly over 365 days, each with its path (35% known, 35% lead, 20% disqualified
   from lead, 10% reach mql and some go on to sql, sqo, customer or are recycled) and its
   moves, first touch (8 sources, 20 import lists, 30 campaigns that change month by month),
   25 countries and 4 grades, correlated so that a day has about 300 combinations; the
   funnel's counters, stage durations and flows computed from those leads; an SDR decision
   per MQL (40 reps in 4 teams, 2% to a fallback queue), accepted by a CRM a minute to two
   days later unless the lead moved on first (two thirds of them), with speed-to-lead
   histograms and SLA outcomes per rep and day; then ANALYZE. The console runs on that
   database (on empty topics), a local admin signs in through the form, and each page is
   fetched WARM_UP times, then REQUESTS times one after another over HTTP (httpx); p50 and p95
   of those.
   The "50 million events" behind a million leads live in score's history (score.history),
   not in the console's tables: no console page reads them. The funnel and speed-to-lead pages
   sum the counters kept incrementally (services/console/queries.py); the lead page reads
   the lead's rows by its id and asks score's API for its explanation, which score reads by
   primary key. No score runs in this section, so the lead page says score's explanation is
   unavailable (the answer to a refused connection): its time is the console's own part.

`python -m bench console`. BENCH_CONSOLE_LEADS (default 20,000: about 140k messages) sizes the
throughput step, BENCH_CONSOLE_PAGE_LEADS (default 1,000,000) the seeded database. Both
databases are dropped and the topics deleted at the end of their step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from alembic import command
from pydantic import BaseModel

from bench.figures import Figure, at_least, at_most
from bench.infra import (
    REPO,
    BenchInfra,
    cpu_seconds,
    dead_letters,
    end_offsets,
    produce_all,
    wait_until_handled,
)
from bench.pipeline import Stacks
from bench.posting import BATCH_SIZE
from bench.traffic import batch_bodies
from devstack.broker import free_port
from devstack.processes import ServiceProcess, StackAddresses
from shared.kafka import aiokafka_connection
from shared.migrations import alembic_config, upgrade_to_head
from shared.settings import KafkaSettings
from shared.topics import (
    CRM_FEEDBACK,
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    ROUTING_NURTURE,
    ROUTING_SDR,
    Topic,
)

SECTION = "console"
TOPICS: tuple[Topic, ...] = (
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    ROUTING_SDR,
    ROUTING_NURTURE,
    CRM_FEEDBACK,
)
LEADS = int(os.environ.get("BENCH_CONSOLE_LEADS", "20000"))
PAGE_LEADS = int(os.environ.get("BENCH_CONSOLE_PAGE_LEADS", "1000000"))
SUSTAINED_EVENTS = 3000.0  # the pipeline's sustained events/s (RESULTS.md: 2,408-3,980)
RATIO_LOAD = 1000.0  # events/s posted to measure what the pipeline gives the console
RATIO_S = 15.0
PAGE_GOAL_MS = 300.0
WARM_UP = 3
REQUESTS = 25
DRAIN_LIMIT_S = 900.0
ADMIN = "bench-admin"
LOGS = REPO / ".bench" / "logs" / "console"
MIGRATIONS = REPO / "services" / "console" / "migrations"

# $1: the topic prefix and '%'.
HANDLED_SQL = (
    "SELECT coalesce(sum(next_offset), 0)::bigint FROM console.consumer_offsets WHERE topic LIKE $1"
)
OUTBOX_SQL = "SELECT count(*) FROM console.outbox WHERE topic LIKE $1"


async def run(infra: BenchInfra) -> list[Figure]:
    ratio, counts, events = await _pipeline_ratio(infra)
    print(
        f"[bench] console: the pipeline gave {sum(counts.values()):,} console messages for"
        f" {events:,} events ({', '.join(f'{t} {n:,}' for t, n in counts.items())})",
        flush=True,
    )
    needed = ratio * SUSTAINED_EVENTS
    drained = await _throughput(infra)
    seeded = await _page_times(infra)
    figures = [
        Figure(
            SECTION,
            f"pipeline: console messages per ingested event ({events:,} events at"
            f" {RATIO_LOAD:,.0f} ev/s)",
            ratio,
            "msg/event",
        ),
        at_least(
            SECTION,
            f"read model: {drained.messages:,} messages of {LEADS:,} leads (needed: the"
            f" ratio x {SUSTAINED_EVENTS:,.0f} ev/s)",
            drained.rate,
            "msg/s",
            round(needed),
        ),
        Figure(SECTION, "console process CPU per message", drained.console_us, "us/msg"),
        Figure(SECTION, "PostgreSQL CPU per message", drained.postgres_us, "us/msg"),
        Figure(SECTION, f"seeding {PAGE_LEADS:,} leads (a year)", seeded.seconds, "s"),
        Figure(SECTION, "seeded database size", seeded.size_gb, "GB"),
    ]
    for page in seeded.pages:
        figures += [
            Figure(SECTION, f"{page.label} p50", page.p50, "ms"),
            at_most(SECTION, f"{page.label} p95", page.p95, "ms", PAGE_GOAL_MS),
        ]
    return figures


# --- 1. what the pipeline gives the console -------------------------------------------------


async def _pipeline_ratio(infra: BenchInfra) -> tuple[float, dict[str, int], int]:
    """(console messages per event, records per console topic, events acknowledged)."""
    stacks = Stacks(infra=infra, bodies=batch_bodies(seed=26, batch_size=BATCH_SIZE))
    async with stacks.fresh() as stack:
        posted = await stack.post(rate=RATIO_LOAD, seconds=RATIO_S)
        if posted.faults():
            print(f"[bench] console: ratio load: {'; '.join(posted.faults())}", flush=True)
        drain_s = await stack.drain(limit_s=120)
        if drain_s >= 120:
            raise RuntimeError("console: the pipeline did not drain in 120 s; no ratio")
        counts = await _records(infra.kafka_bootstrap, stack.addresses.topic_prefix)
    return sum(counts.values()) / max(posted.acknowledged, 1), counts, posted.acknowledged


async def _records(bootstrap: str, prefix: str) -> dict[str, int]:
    """Records on each of the console's topics under `prefix`."""
    consumer = AIOKafkaConsumer(
        **aiokafka_connection(KafkaSettings(bootstrap_servers=bootstrap)), fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(topic.full_name(prefix), partition)
            for topic in TOPICS
            for partition in consumer.partitions_for_topic(topic.full_name(prefix)) or ()
        ]
        ends = await end_offsets(consumer, partitions)
    finally:
        await consumer.stop()
    counts = dict.fromkeys((topic.name for topic in TOPICS), 0)
    for tp, end in ends.items():
        counts[tp.topic.removeprefix(prefix)] += end
    return counts


# --- 2. read-model throughput ---------------------------------------------------------------

FIRST_NAMES = ["Maria", "James", "Aiko", "Lena", "Daniel", "Priya", "Jonas", "Grace", "Omar",
               "Sofia", "Lucas", "Chen", "Fatima", "Noah", "Elena", "Mateo", "Hannah", "Ravi"]  # fmt: skip
LAST_NAMES = ["Gonzalez", "Smith", "Tanaka", "Fischer", "Okafor", "Raman", "Weber", "Hopper",
              "Haddad", "Rossi", "Martin", "Wang", "Khan", "Brown", "Petrova", "Silva", "Kim"]  # fmt: skip
COMPANIES = ["Northwind Logistics", "Fernhill Analytics", "Brightwave Media", "Initech",
             "Globex", "Umbrella Health", "Vandelay Industries", "Hooli", "Acme Robotics",
             "Krämer Maschinenbau", "Soylent Foods", "Stark Energy"]  # fmt: skip
SOURCES = ["website", "paid-search", "paid-social", "webinar", "crm-import", "list-import",
           "partner", "events"]  # fmt: skip
COUNTRIES = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "JP", "IN", "BR", "CA", "AU"]
GRADES = {"A": 35, "B": 20, "C": 10, "D": -20}  # fit points of each grade
REPS = [("rep-ada", "Ada Lovelace", "sdr-emea"), ("rep-grace", "Grace Hopper", "sdr-emea"),
        ("rep-alan", "Alan Turing", "sdr-emea"), ("rep-kath", "Katherine Johnson", "sdr-na"),
        ("rep-dennis", "Dennis Ritchie", "sdr-na"), ("rep-barbara", "Barbara Liskov", "sdr-na")]  # fmt: skip


def _examples(topic: Topic) -> list[dict[str, Any]]:
    examples: list[dict[str, Any]] = orjson.loads(topic.examples_file.read_bytes())
    return examples


Wave = dict[Topic, list[tuple[str, BaseModel]]]


def _wave() -> Wave:
    return {topic: [] for topic in TOPICS}


@dataclass
class Mix:
    """The messages to produce, per topic (key, value): `first`, each lead's first stage change;
    `rest`, everything else. And each lead's last score time."""

    first: Wave = field(default_factory=_wave)
    rest: Wave = field(default_factory=_wave)
    last_scored: dict[str, datetime] = field(default_factory=dict)

    def add(self, topic: Topic, key: str, value: dict[str, Any]) -> None:
        wave = self.first if value.get("from_stage") == "anonymous" else self.rest
        wave[topic].append((key, topic.model.model_validate(value)))

    @property
    def count(self) -> int:
        return sum(len(values) for wave in (self.first, self.rest) for values in wave.values())


def mix(rng: random.Random, leads: int) -> Mix:
    """The throughput step's messages (module doc), for `leads` leads over the last 12 hours."""
    lifecycle = _examples(LEADS_LIFECYCLE)[0]
    scored = _examples(LEADS_SCORED)[1]
    sdr = _examples(ROUTING_SDR)[0]
    nurture = _examples(ROUTING_NURTURE)[0]
    report = _examples(CRM_FEEDBACK)[0]
    start = datetime.now(UTC) - timedelta(hours=12)
    spacing = timedelta(hours=11) / leads
    out = Mix()
    for n in range(leads):
        lead_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        company = rng.choice(COMPANIES)
        domain = company.split()[0].lower() + ".example"
        email = f"{first}.{last}.{n}@{domain}".lower()
        source = rng.choice(SOURCES)
        grade = rng.choice(list(GRADES))
        later_grade = rng.choice(list(GRADES)) if rng.random() < 0.1 else grade
        profile = {**lifecycle["profile"], "email": email, "first_name": first, "last_name": last,
                   "company": company, "company_domain": domain,
                   "country": rng.choice(COUNTRIES)}  # fmt: skip
        touch = {
            **lifecycle["first_touch"],
            "source": source,
            "import_list": f"list-{rng.randrange(20)}" if "import" in source else None,
            "campaign": f"campaign-{rng.randrange(30)}" if source.startswith("paid") else None,
        }
        stages = ["known"]
        if rng.random() < 0.6:
            stages.append("lead")
            if rng.random() < 0.25:
                stages.append("mql")
        at = start + spacing * n
        moves: list[tuple[str, str, datetime, str]] = []  # (from, to, at, transition id)
        previous = "anonymous"
        for stage in stages:
            at += timedelta(seconds=rng.uniform(5, 600))
            moves.append((previous, stage, at, f"{lead_id}:{stage}:ajs-{uuid.uuid4()}"))
            previous = stage
        scores = sorted(
            moves[0][2] + timedelta(seconds=rng.uniform(0, 1800)) for _ in range(rng.randint(3, 6))
        )

        for index, (from_stage, to_stage, moved_at, transition_id) in enumerate(moves):
            total = GRADES[grade] + 25 * (index + 1)
            out.add(
                LEADS_LIFECYCLE,
                lead_id,
                {**lifecycle, "transition_id": transition_id, "lead_id": lead_id,
                 "from_stage": from_stage, "to_stage": to_stage, "at": moved_at,
                 "received_at": moved_at, "profile": profile, "score": _score(total, grade),
                 "first_touch": touch, "account": None, "account_id": None,
                 "firmographics": {**lifecycle["firmographics"], "domain": domain,
                                   "company_name": company}},
            )  # fmt: skip
        for index, scored_at in enumerate(scores):
            now_grade = later_grade if index >= len(scores) // 2 else grade
            out.add(
                LEADS_SCORED,
                lead_id,
                {**scored, "lead_id": lead_id, "message_id": f"ajs-{uuid.uuid4()}",
                 "score": _score(GRADES[now_grade] + 10 * index, now_grade),
                 "scored_at": scored_at, "received_at": scored_at},
            )  # fmt: skip
        out.last_scored[lead_id] = scores[-1]
        _, last_stage, last_at, last_transition = moves[-1]
        decided = last_at + timedelta(milliseconds=rng.uniform(80, 900))
        decision = {"decision_id": str(uuid.uuid4()), "transition_id": last_transition,
                    "lead_id": lead_id, "email": email, "name": f"{first} {last}",
                    "company": company, "stage": last_stage, "received_at": last_at,
                    "decided_at": decided, "stored_at": decided,
                    "speed_to_lead_ms": int((decided - last_at).total_seconds() * 1000)}  # fmt: skip
        if last_stage == "mql":
            rep, name, team = rng.choice(REPS)
            queued = rng.random() < 0.05
            owner = None if queued else {**sdr["owner"], "id": rep, "name": name, "team": team}
            out.add(
                ROUTING_SDR,
                lead_id,
                {**sdr, **decision, "owner": owner, "queue": "sdr-unassigned" if queued else None,
                 "strategy": "fallback_queue" if queued else "round_robin",
                 "sla_due_at": decided + timedelta(minutes=5)},
            )  # fmt: skip
            if not queued and rng.random() < 0.7:
                by_email = rng.random() < 0.2
                out.add(
                    CRM_FEEDBACK,
                    email if by_email else lead_id,
                    {**report, "feedback_id": f"bench-{uuid.uuid4()}",
                     "lead_id": None if by_email else lead_id, "email": email,
                     "owner_id": rep, "at": decided + timedelta(minutes=rng.uniform(1, 30))},
                )  # fmt: skip
        elif rng.random() < 0.5:
            out.add(ROUTING_NURTURE, lead_id, {**nurture, **decision})
    return out


def _score(total: int, grade: str) -> dict[str, Any]:
    fit = GRADES[grade]
    band = 1 if total >= 60 else 2 if total >= 40 else 3 if total >= 15 else 4
    return {"fit": fit, "behaviour": total - fit, "total": total, "grade": grade, "band": band,
            "priority": f"{grade}{band}"}  # fmt: skip


@dataclass(frozen=True)
class Drained:
    messages: int
    rate: float  # messages/s by the clock
    console_us: float  # the console process's CPU per message, from its readiness
    postgres_us: float


@dataclass(frozen=True)
class Timed:
    """One wave: messages handled while the clock ran and its seconds; from the process's
    readiness, messages handled and the CPU seconds of the console and of PostgreSQL."""

    handled: int
    elapsed: float
    after_ready: int
    console_cpu: float
    postgres_cpu: float


async def _throughput(infra: BenchInfra) -> Drained:
    """Two waves on one database, each on its own topics and console process: the leads' first
    stage changes, then the rest of their messages (module doc)."""
    messages = mix(random.Random(26), LEADS)
    url = await _console_database(infra)
    prefixes: list[str] = []
    try:
        waves: list[Timed] = []
        for name, wave in (("first stage changes", messages.first), ("the rest", messages.rest)):
            prefixes.append(await infra.fresh_topic_prefix())
            waves.append(await _timed_wave(infra, url, prefixes[-1], wave))
            count = sum(len(values) for values in wave.values())
            print(
                f"[bench] console: {name}: {count:,} messages"
                f" ({', '.join(f'{t.name} {len(v):,}' for t, v in wave.items() if v)}),"
                f" {waves[-1].handled / waves[-1].elapsed:,.0f} msg/s; from readiness"
                f" {waves[-1].console_cpu:.1f} s of console CPU, {waves[-1].postgres_cpu:.1f} s"
                " of PostgreSQL CPU",
                flush=True,
            )
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            rows = await connection.fetch("SELECT lead_id, score_at FROM console.leads")
        finally:
            await connection.close()
        kept = sum(1 for row in rows if row["score_at"] == messages.last_scored.get(row["lead_id"]))
        print(f"[bench] console: {len(rows):,} leads stored, {kept:,} hold their last score")
        after_ready = max(sum(wave.after_ready for wave in waves), 1)
        return Drained(
            messages=messages.count,
            rate=sum(wave.handled for wave in waves) / sum(wave.elapsed for wave in waves),
            console_us=sum(wave.console_cpu for wave in waves) / after_ready * 1e6,
            postgres_us=sum(wave.postgres_cpu for wave in waves) / after_ready * 1e6,
        )
    finally:
        await infra.drop_database(url)
        for prefix in prefixes:
            await infra.delete_topics(prefix)


async def _timed_wave(infra: BenchInfra, url: str, prefix: str, wave: Wave) -> Timed:
    """Produce `wave` under `prefix`, then start the console and time it until all is handled
    (`wait_until_handled`); raises when it dead-lettered anything (an offset stored for a
    record not applied)."""
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    expected = 0
    for topic, values in wave.items():
        if values:
            await produce_all(kafka, topic, values)
            expected += len(values)
    async with _console(infra, url, prefix) as process:
        assert process.process is not None
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            before_ready = await connection.fetchval(HANDLED_SQL, f"{prefix}%")
            cpu = cpu_seconds(process.process.pid)
            postgres = infra.infrastructure_cpu_s()["postgres"]
            handled, elapsed = await _watched(
                process,
                wait_until_handled(
                    url,
                    handled_sql=HANDLED_SQL,
                    outbox_sql=OUTBOX_SQL,
                    expected=expected,
                    arguments=(f"{prefix}%",),
                ),
            )
            cpu = cpu_seconds(process.process.pid) - cpu
            postgres = infra.infrastructure_cpu_s()["postgres"] - postgres
        finally:
            await connection.close()
    if letters := await dead_letters(infra.kafka_bootstrap, prefix):
        raise RuntimeError(f"console dead-lettered {letters} of {expected} messages")
    return Timed(handled, elapsed, expected - before_ready, cpu, postgres)


async def _console_database(infra: BenchInfra) -> str:
    """A fresh database with the console's schema too (`fresh_database` migrates the others)."""
    url = await infra.fresh_database()
    await asyncio.to_thread(
        upgrade_to_head, migrations_dir=MIGRATIONS, schema="console", database_url=url
    )
    return url


def _addresses(infra: BenchInfra, url: str, prefix: str) -> StackAddresses:
    """The console's settings: free ports; score's API on a port nobody listens on."""
    return StackAddresses(
        kafka_bootstrap=infra.kafka_bootstrap,
        database_url=url,
        topic_prefix=prefix,
        health_ports={"console": free_port()},
        api_ports={"score": free_port()},
        console_port=free_port(),
    )


@contextlib.asynccontextmanager
async def _console(
    infra: BenchInfra, url: str, prefix: str, *, addresses: StackAddresses | None = None
) -> AsyncIterator[ServiceProcess]:
    """`python -m services.console run`, ready, until the block ends."""
    LOGS.mkdir(parents=True, exist_ok=True)
    process = ServiceProcess(
        "console", addresses or _addresses(infra, url, prefix), log_file=LOGS / "console.log"
    ).start()
    try:
        await asyncio.to_thread(process.wait_ready)
        yield process
    finally:
        await asyncio.to_thread(process.stop)


async def _watched(process: ServiceProcess, waiting: Any) -> tuple[int, float]:
    """`wait_until_handled`'s answer, failing when the process ends or DRAIN_LIMIT_S passes."""
    task: asyncio.Task[tuple[int, float]] = asyncio.ensure_future(waiting)
    deadline = time.monotonic() + DRAIN_LIMIT_S
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=1)
            if process.process is not None and process.process.poll() is not None:
                raise RuntimeError(f"console exited during the step (log: {process.log_file})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"console did not drain in {DRAIN_LIMIT_S:.0f} s")
        return task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- 3. page times at a million leads ---------------------------------------------------------

# Each statement runs on one connection (its temporary tables), in order; $1 is the number of
# leads where a statement takes it. Lead g entered the funnel g/N of a year ago; its path, first
# touch, country, grade, name and company come from hashes of its id.
SEED = (
    ("SET TIME ZONE 'UTC'", False),
    ("SET work_mem = '256MB'", False),
    ("SET maintenance_work_mem = '512MB'", False),
    # The secondary indexes of the two big tables are dropped during the load and made again
    # from their own definitions after it: building the trigram index once takes a fraction of
    # what a million inserts into it do.
    (
        """
        CREATE TEMPORARY TABLE seed_indexes AS
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition
          FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'console'::regnamespace AND c.relname IN ('leads', 'stage_changes')
           AND NOT i.indisprimary
        """,
        False,
    ),
    (
        "DO $$ DECLARE i record; BEGIN"
        " FOR i IN SELECT name FROM seed_indexes LOOP EXECUTE 'DROP INDEX ' || i.name; END LOOP;"
        " END $$",
        False,
    ),
    (
        """
        CREATE TEMPORARY TABLE seed_leads (
            g integer, lead_id text, created_at timestamptz, path text[], source text,
            import_list text, campaign text, country text, grade text, email text, name text,
            company text, title text
        )
        """,
        False,
    ),
    (
        """
        INSERT INTO seed_leads
        SELECT g, lead_id, created_at,
               CASE WHEN p < 35 THEN ARRAY['known']
                    WHEN p < 70 THEN ARRAY['known', 'lead']
                    WHEN p < 74 THEN ARRAY['known', 'lead', 'mql']
                    WHEN p < 76 THEN ARRAY['known', 'lead', 'mql', 'sql']
                    WHEN p < 77 THEN ARRAY['known', 'lead', 'mql', 'sql', 'sqo']
                    WHEN p < 78 THEN ARRAY['known', 'lead', 'mql', 'sql', 'sqo', 'customer']
                    WHEN p < 80 THEN ARRAY['known', 'lead', 'mql', 'recycled']
                    ELSE ARRAY['known', 'lead', 'disqualified'] END,
               source,
               CASE WHEN source IN ('crm-import', 'list-import')
                    THEN 'list-' || (seg / 8 + month) % 20 END,
               CASE WHEN source IN ('paid-search', 'paid-social', 'webinar', 'events')
                    THEN 'campaign-' || (seg / 8 + 2 * month) % 30 END,
               (ARRAY['US', 'GB', 'DE', 'FR', 'ES', 'IT', 'NL', 'SE', 'NO', 'DK', 'FI', 'PL',
                      'AT', 'CH', 'BE', 'IE', 'PT', 'JP', 'IN', 'SG', 'AU', 'CA', 'BR', 'MX',
                      'ZA'])[1 + (seg / 8 + seg % 5) % 25],
               (ARRAY['A', 'B', 'C', 'D'])[1 + seg / 75],
               lower(first || '.' || last || g) || '@'
                   || CASE WHEN h1 / 100 % 100 < 12 THEN 'gmail.com'
                           ELSE lower(adjective || noun) || '.com' END,
               first || ' ' || last, adjective || ' ' || noun,
               (ARRAY['VP Sales', 'Head of Marketing', 'Director of IT', 'Sales Manager',
                      'Software Engineer', 'CFO', 'Operations Lead', 'Student'])[1 + h1 / 10000 % 8]
          FROM (
                SELECT g, lead_id, created_at, h1, h3, h1 % 100 AS p, h2 % 300 AS seg,
                       (extract(epoch FROM now() - created_at) / 2592000)::integer AS month,
                       (ARRAY['website', 'paid-search', 'paid-social', 'webinar', 'crm-import',
                              'list-import', 'partner', 'events'])[1 + h2 % 300 % 8] AS source,
                       (ARRAY['Maria', 'James', 'Aiko', 'Lena', 'Daniel', 'Priya', 'Jonas',
                              'Grace', 'Omar', 'Sofia', 'Lucas', 'Chen', 'Fatima', 'Noah',
                              'Elena', 'Mateo', 'Hannah', 'Ravi', 'Olga', 'Kwame', 'Yuki',
                              'Ana', 'Pierre', 'Ingrid', 'Tomas', 'Leila', 'David', 'Sara',
                              'Ahmed', 'Julia', 'Marco', 'Nina', 'Peter', 'Laura', 'Ivan',
                              'Emma', 'Diego', 'Mei', 'Ben', 'Chloe', 'Samuel', 'Zoe', 'Hugo',
                              'Alice', 'Felix', 'Rosa', 'Kenji', 'Amara', 'Liam',
                              'Isabel'])[1 + h3 % 50] AS first,
                       (ARRAY['Gonzalez', 'Smith', 'Tanaka', 'Fischer', 'Okafor', 'Raman',
                              'Weber', 'Hopper', 'Haddad', 'Rossi', 'Martin', 'Wang', 'Khan',
                              'Brown', 'Petrova', 'Silva', 'Kim', 'Nguyen', 'Johansson',
                              'Dubois', 'Novak', 'Kowalski', 'Murphy', 'Garcia', 'Lopez',
                              'Müller', 'Schmidt', 'Jensen', 'Nielsen', 'Costa', 'Santos',
                              'Ivanova', 'Sato', 'Suzuki', 'Patel', 'Singh', 'Cohen', 'Levi',
                              'Ali', 'Hassan', 'Mensah', 'Adeyemi', 'Walker', 'Taylor',
                              'Wilson', 'Moore', 'Clark', 'Lewis', 'Young', 'Allen', 'King',
                              'Wright', 'Scott', 'Green', 'Baker', 'Adams', 'Nelson', 'Hill',
                              'Campbell', 'Mitchell', 'Roberts', 'Carter', 'Phillips', 'Evans',
                              'Turner', 'Torres', 'Parker', 'Collins', 'Edwards', 'Stewart',
                              'Flores', 'Morris', 'Rivera', 'Cook', 'Rogers', 'Morgan',
                              'Peterson', 'Cooper', 'Reed', 'Bailey', 'Bell', 'Gomez', 'Kelly',
                              'Howard', 'Ward', 'Cox', 'Diaz', 'Richardson', 'Wood', 'Watson',
                              'Brooks', 'Bennett', 'Gray', 'James', 'Reyes', 'Cruz', 'Hughes',
                              'Price', 'Myers', 'Long'])[1 + h3 / 50 % 100] AS last,
                       (ARRAY['Northwind', 'Fernhill', 'Brightwave', 'Blue', 'Silver', 'Red',
                              'Green', 'Golden', 'Iron', 'Quantum', 'Nova', 'Apex', 'Summit',
                              'Harbor', 'River', 'Cedar', 'Maple', 'Granite', 'Crystal', 'Solar',
                              'Lunar', 'Polar', 'Urban', 'Prime', 'Vertex', 'Atlas', 'Orion',
                              'Pioneer', 'Horizon', 'Beacon'])[1 + h3 / 5000 % 30] AS adjective,
                       (ARRAY['Logistics', 'Analytics', 'Media', 'Robotics', 'Health', 'Foods',
                              'Energy', 'Systems', 'Software', 'Capital', 'Labs', 'Networks',
                              'Dynamics', 'Industries', 'Partners', 'Retail', 'Motors',
                              'Pharma', 'Security', 'Cloud', 'Finance', 'Insurance', 'Textiles',
                              'Telecom', 'Biotech', 'Consulting', 'Aerospace', 'Studios',
                              'Foundry', 'Works'])[1 + h3 / 150000 % 30] AS noun
                  FROM (
                        SELECT g, lead_id, created_at,
                               hashtext(lead_id) & 2147483647 AS h1,
                               hashtext(lead_id || 'd') & 2147483647 AS h2,
                               hashtext(lead_id || 'n') & 2147483647 AS h3
                          FROM (
                                SELECT g, md5('lead-' || g)::uuid::text AS lead_id,
                                       now() - g::float8 / $1 * interval '365 days' AS created_at
                                  FROM generate_series(1, $1) AS g
                               ) AS numbered
                       ) AS hashed
               ) AS drawn
        """,
        True,
    ),
    (
        """
        CREATE TEMPORARY TABLE seed_moves (
            g integer, lead_id text, k integer, from_stage text, to_stage text,
            at timestamptz, stay_s float8, last boolean
        )
        """,
        False,
    ),
    # Each stay lasts from a minute to 20 days (log-uniform); moves not yet made are left out.
    (
        """
        INSERT INTO seed_moves
        SELECT g, lead_id, k, from_stage, to_stage, at,
               extract(epoch FROM at - lag(at) OVER (PARTITION BY g ORDER BY k)),
               k = max(k) OVER (PARTITION BY g)
          FROM (
                SELECT l.g, l.lead_id, s.k, coalesce(l.path[s.k - 1], 'anonymous') AS from_stage,
                       l.path[s.k] AS to_stage,
                       l.created_at + make_interval(secs => sum(
                           CASE WHEN s.k = 1 THEN 0
                                ELSE exp(ln(60.0) + (hashtext(l.lead_id || s.k) & 65535)
                                                    / 65536.0 * ln(28800.0)) END
                       ) OVER (PARTITION BY l.g ORDER BY s.k)) AS at
                  FROM seed_leads AS l, generate_subscripts(l.path, 1) AS s (k)
               ) AS timed
         WHERE at <= now()
        """,
        False,
    ),
    (
        """
        INSERT INTO console.leads (lead_id, created_at, stage, stage_at, moves, email, name,
                                   company, title, country, source, import_list, campaign,
                                   score, score_at, likelihood)
        SELECT l.lead_id, l.created_at, m.stage, m.stage_at, m.moves, l.email, l.name, l.company,
               l.title, l.country, l.source, l.import_list, l.campaign,
               jsonb_build_object('fit', fit, 'behaviour', behaviour, 'total', fit + behaviour,
                                  'grade', l.grade, 'band', band, 'priority', l.grade || band),
               m.stage_at, NULL
          FROM seed_leads AS l
          JOIN (
                SELECT g, max(at) AS stage_at, (array_agg(to_stage ORDER BY k DESC))[1] AS stage,
                       jsonb_agg(jsonb_build_array(lead_id || ':' || to_stage || ':seed-' || k,
                                                   at, from_stage, to_stage, '[]'::jsonb)
                                 ORDER BY k) AS moves
                  FROM seed_moves GROUP BY g
               ) AS m USING (g),
               LATERAL (SELECT CASE m.stage WHEN 'known' THEN 4 WHEN 'lead' THEN 3
                                            WHEN 'recycled' THEN 4 WHEN 'disqualified' THEN 4
                                            ELSE 1 END AS band,
                               CASE l.grade WHEN 'A' THEN 35 WHEN 'B' THEN 20 WHEN 'C' THEN 10
                                            ELSE -20 END AS fit) AS card,
               LATERAL (SELECT CASE band WHEN 1 THEN 70 WHEN 3 THEN 15 ELSE 0 END
                                   AS behaviour) AS behaviour
        """,
        False,
    ),
    (
        """
        INSERT INTO console.stage_changes (transition_id, lead_id, at, from_stage, to_stage,
                                           reason, by_sales, skipped, score)
        SELECT m.lead_id || ':' || m.to_stage || ':seed-' || m.k, m.lead_id, m.at, m.from_stage,
               m.to_stage,
               CASE m.to_stage WHEN 'known' THEN 'identified'
                               WHEN 'lead' THEN 'engaged after identification'
                               WHEN 'mql' THEN 'total score 85 >= MQL threshold 60'
                               WHEN 'recycled' THEN 'score fell below the MQL line'
                               ELSE 'CRM reported ' || m.to_stage END,
               m.to_stage IN ('sql', 'sqo', 'customer', 'disqualified'), '{}', c.score
          FROM seed_moves AS m JOIN console.leads AS c USING (lead_id)
        """,
        False,
    ),
    (
        "DO $$ DECLARE i record; BEGIN"
        " FOR i IN SELECT definition FROM seed_indexes LOOP EXECUTE i.definition; END LOOP;"
        " END $$",
        False,
    ),
    (
        """
        INSERT INTO console.funnel (cohort_day, source, import_list, campaign, country, grade,
                                    stage, now, reached)
        SELECT (l.created_at AT TIME ZONE 'UTC')::date, l.source, coalesce(l.import_list, ''),
               coalesce(l.campaign, ''), l.country, l.grade, m.to_stage,
               count(*) FILTER (WHERE m.last), count(*)
          FROM seed_moves AS m JOIN seed_leads AS l USING (g)
         GROUP BY 1, 2, 3, 4, 5, 6, 7
        """,
        False,
    ),
    (
        """
        INSERT INTO console.stage_durations (cohort_day, source, import_list, campaign, country,
                                             grade, stage, bucket, leads)
        SELECT (l.created_at AT TIME ZONE 'UTC')::date, l.source, coalesce(l.import_list, ''),
               coalesce(l.campaign, ''), l.country, l.grade, m.from_stage,
               CASE WHEN m.stay_s < 1 THEN 0
                    ELSE least(floor(ln(m.stay_s) / ln(2) * 16), 1023) END,
               count(*)
          FROM seed_moves AS m JOIN seed_leads AS l USING (g)
         WHERE m.k > 1
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        """,
        False,
    ),
    (
        """
        INSERT INTO console.stage_flows (day, source, import_list, campaign, country, grade,
                                         stage, entered, exited)
        SELECT (f.at AT TIME ZONE 'UTC')::date, l.source, coalesce(l.import_list, ''),
               coalesce(l.campaign, ''), l.country, l.grade, f.stage, sum(f.entered),
               sum(f.exited)
          FROM (SELECT g, at, to_stage AS stage, 1 AS entered, 0 AS exited FROM seed_moves
                UNION ALL
                SELECT g, at, from_stage, 0, 1 FROM seed_moves WHERE k > 1) AS f
          JOIN seed_leads AS l USING (g)
         GROUP BY 1, 2, 3, 4, 5, 6, 7
        """,
        False,
    ),
    (
        """
        INSERT INTO console.dimension_values (dimension, value)
        SELECT DISTINCT pair.dimension, pair.value
          FROM console.funnel AS f,
               LATERAL (VALUES ('source', f.source), ('import_list', f.import_list),
                               ('campaign', f.campaign), ('country', f.country),
                               ('grade', f.grade)) AS pair (dimension, value)
         WHERE pair.value <> ''
        """,
        False,
    ),
    (
        """
        INSERT INTO console.reps (rep, name, team)
        SELECT 'rep-' || n, (ARRAY['Ada', 'Grace', 'Alan', 'Katherine', 'Dennis', 'Barbara',
                                   'Edsger', 'Frances', 'Ken', 'Radia'])[1 + n % 10]
                            || ' ' || (ARRAY['Lovelace', 'Hopper', 'Turing', 'Johnson'])[1 + n / 10],
               (ARRAY['sdr-emea', 'sdr-na', 'sdr-apac', 'sdr-inbound'])[1 + n % 4]
          FROM generate_series(0, 39) AS n
        """,
        False,
    ),
    # An SDR decision per MQL: 80 ms to 4.8 s after the move; 2% to the fallback queue; 90% of
    # the others accepted by a CRM a minute to two days later, unless the lead moved on first.
    (
        """
        INSERT INTO console.decisions (decision_id, lead_id, route, team, rep, rep_name, target,
                                       strategy, reasons, supersedes, received_at, decided_at,
                                       sla_due_at, speed_ms, queued, accepted_at, closed_at,
                                       closed_reason)
        SELECT md5(d.lead_id || ':sdr')::uuid::text, d.lead_id, 'sdr',
               CASE WHEN d.queued THEN '' ELSE r.team END,
               CASE WHEN d.queued THEN 'queue:sdr-unassigned' ELSE r.rep END,
               CASE WHEN d.queued THEN NULL ELSE r.name END,
               CASE WHEN d.queued THEN 'queue sdr-unassigned' ELSE r.name END,
               CASE WHEN d.queued THEN 'fallback_queue' ELSE 'round_robin' END,
               ARRAY['total score 85 >= MQL threshold 60', 'asked for a demo'], NULL,
               d.received_at, d.decided_at, d.decided_at + interval '1 hour', d.speed_ms,
               d.queued, d.accepted_at, coalesce(d.accepted_at, d.next_at),
               CASE WHEN d.accepted_at IS NOT NULL THEN 'CRM reported accepted'
                    WHEN d.next_at IS NOT NULL THEN 'lead moved to ' || d.next_stage END
          FROM (
                SELECT t.*, t.received_at + make_interval(secs => t.speed_ms / 1000.0)
                                AS decided_at,
                       CASE WHEN NOT t.queued AND t.h / 50 % 10 < 9
                                 AND t.received_at + make_interval(secs => t.accept_s)
                                     <= least(now(), coalesce(t.next_at, now()))
                            THEN t.received_at + make_interval(secs => t.accept_s) END
                           AS accepted_at
                  FROM (
                        SELECT m.lead_id, m.at AS received_at, n.at AS next_at,
                               n.to_stage AS next_stage, h.h, h.h % 50 = 0 AS queued,
                               (exp(ln(80.0) + h.h % 4096 / 4096.0 * ln(60.0)))::bigint
                                   AS speed_ms,
                               exp(ln(60.0) + h.h / 500 % 4096 / 4096.0 * ln(2880.0))
                                   AS accept_s,
                               'rep-' || h.h / 2000000 % 40 AS rep
                          FROM seed_moves AS m
                          LEFT JOIN seed_moves AS n ON n.g = m.g AND n.k = m.k + 1,
                               LATERAL (SELECT hashtext(m.lead_id || 's') & 2147483647 AS h) AS h
                         WHERE m.to_stage = 'mql'
                       ) AS t
               ) AS d
          JOIN console.reps AS r USING (rep)
        """,
        False,
    ),
    (
        """
        INSERT INTO console.feedback (feedback_id, lead_id, outcome, reason, owner_id, at)
        SELECT 'seed-' || decision_id, lead_id, 'accepted', NULL, rep, accepted_at
          FROM console.decisions WHERE accepted_at IS NOT NULL
        """,
        False,
    ),
    (
        """
        INSERT INTO console.speed (day, team, rep, measure, bucket, leads)
        SELECT day, team, rep, measure,
               CASE WHEN ms < 1 THEN 0 ELSE least(floor(ln(ms) / ln(2) * 16), 1023) END,
               count(*)
          FROM (SELECT (decided_at AT TIME ZONE 'UTC')::date AS day, team, rep,
                       'decision' AS measure, speed_ms::float8 AS ms
                  FROM console.decisions
                UNION ALL
                SELECT (decided_at AT TIME ZONE 'UTC')::date, team, rep, 'acceptance',
                       extract(epoch FROM accepted_at - received_at)::float8 * 1000
                  FROM console.decisions WHERE accepted_at IS NOT NULL) AS measured
         GROUP BY 1, 2, 3, 4, 5
        """,
        False,
    ),
    (
        """
        INSERT INTO console.sla_outcomes (day, team, rep, met, breached, reassigned, escalated)
        SELECT (decided_at AT TIME ZONE 'UTC')::date, team, rep,
               count(*) FILTER (WHERE accepted_at <= sla_due_at),
               count(*) FILTER (WHERE accepted_at > sla_due_at), 0, 0
          FROM console.decisions WHERE accepted_at IS NOT NULL
         GROUP BY 1, 2, 3
        """,
        False,
    ),
    ("ANALYZE", False),
)
TABLES = ("leads", "stage_changes", "decisions", "feedback", "funnel", "stage_durations",
          "stage_flows", "funnel_days", "stage_duration_days", "stage_flow_days", "stage_now",
          "speed", "sla_outcomes", "dimension_values")  # fmt: skip
ROW_COUNTS_SQL = (
    "SELECT relname, reltuples::bigint FROM pg_class"
    " WHERE relnamespace = 'console'::regnamespace AND relname = ANY($1::text[])"
)
# The lead the lead page and the searches look for: an MQL accepted by a CRM.
EXAMPLE_LEAD_SQL = (
    "SELECT l.lead_id, l.email, l.name FROM console.decisions AS d"
    " JOIN console.leads AS l USING (lead_id)"
    " WHERE d.accepted_at IS NOT NULL ORDER BY d.decision_id LIMIT 1"
)


@dataclass(frozen=True)
class PageTimes:
    label: str
    p50: float
    p95: float


@dataclass(frozen=True)
class Seeded:
    seconds: float
    size_gb: float
    pages: list[PageTimes]


async def _page_times(infra: BenchInfra) -> Seeded:
    url = await _console_database(infra)
    prefix = await infra.fresh_topic_prefix()
    try:
        seconds, size = await _seed(url)
        addresses = _addresses(infra, url, prefix)
        added = await asyncio.to_thread(
            ServiceProcess("console", addresses, log_file=None).run_to_end,
            "add-person",
            ADMIN,
            "--role",
            "admin",
            "--json",
        )
        password = json.loads(added)["password"]
        connection = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            example = await connection.fetchrow(EXAMPLE_LEAD_SQL)
            source = await connection.fetchval(
                "SELECT value FROM console.dimension_values WHERE dimension = 'source'"
                " ORDER BY value LIMIT 1 OFFSET 1"
            )
        finally:
            await connection.close()
        local, _ = example["email"].split("@")
        today = datetime.now(UTC).date()
        pages = [
            ("/funnel (last 90 days)", "/funnel"),
            (f"/funnel?source={source}&grade=A", f"/funnel?source={source}&grade=A"),
            ("/funnel (a year)", f"/funnel?since={today - timedelta(days=364)}&until={today}"),
            ("/api/funnel (last 90 days)", "/api/funnel"),
            ("/speed (last 90 days)", "/speed"),
            ("/speed (a year)", f"/speed?since={today - timedelta(days=364)}&until={today}"),
            (f"/leads?q=<email prefix, {len(local) - 2} chars>", f"/leads?q={local[:-2]}"),
            ("/leads?q=<part of a name>", f"/leads?q={example['name'].split()[1][:6].lower()}"),
            ("/leads/<lead id>", f"/leads/{example['lead_id']}"),
        ]
        async with _console(infra, url, prefix, addresses=addresses):
            times = await _fetch_pages(addresses.console_port, password, pages)
        return Seeded(seconds=seconds, size_gb=size / 1e9, pages=times)
    finally:
        await infra.drop_database(url)
        await infra.delete_topics(prefix)


def _refill_rollups(url: str) -> None:
    config = alembic_config(migrations_dir=MIGRATIONS, schema="console", database_url=url)
    command.downgrade(config, "0002")
    command.upgrade(config, "head")


async def _seed(url: str) -> tuple[float, int]:
    """Seconds the seeding took, and the database's size in bytes after it."""
    started = time.monotonic()
    connection = await asyncpg.connect(url.replace("+asyncpg", ""), command_timeout=None)
    try:
        for statement, sized in SEED:
            step = time.monotonic()
            await connection.execute(statement, *((PAGE_LEADS,) if sized else ()))
            if time.monotonic() - step > 5:
                first = " ".join(statement.split())[:60]
                print(f"[bench] console: {time.monotonic() - step:.0f}s: {first}", flush=True)
        # The rollups (migration 0003) are filled from the counters seeded above, by the
        # migration's own statements: back to 0002 and up again, as a deployment's upgrade
        # fills them from the counters it holds.
        await asyncio.to_thread(_refill_rollups, url)
        await connection.execute("ANALYZE")
        seconds = time.monotonic() - started
        rows = dict(await connection.fetch(ROW_COUNTS_SQL, list(TABLES)))
        size = int(await connection.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await connection.close()
    print(
        f"[bench] console: seeded in {seconds:.0f}s, {size / 1e9:.2f} GB: "
        + ", ".join(f"{table} {rows.get(table, 0):,}" for table in TABLES),
        flush=True,
    )
    return seconds, size


async def _fetch_pages(
    port: int, password: str, pages: Sequence[tuple[str, str]]
) -> list[PageTimes]:
    """Signed in as the admin, each page WARM_UP times, then REQUESTS times timed."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        await client.get("/sign-in")
        signed = await client.post(
            "/sign-in",
            data={
                "username": ADMIN,
                "password": password,
                "csrftoken": client.cookies["leadflow_csrf"],
                "next": "/funnel",
            },
        )
        if signed.status_code != 303:
            raise RuntimeError(f"console: sign-in answered {signed.status_code}")
        times = []
        for label, path in pages:
            elapsed = []
            for n in range(WARM_UP + REQUESTS):
                started = time.perf_counter()
                answer = await client.get(path)
                if n >= WARM_UP:
                    elapsed.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"console: {path} answered {answer.status_code}")
            if path.startswith("/leads/") and "unavailable" not in answer.text:
                raise RuntimeError("console: the lead page did not say score is unavailable")
            times.append(PageTimes(label, statistics.median(elapsed), _p95(elapsed)))
            print(
                f"[bench] console: {label}: p50 {times[-1].p50:.0f} ms, p95 {times[-1].p95:.0f}"
                f" ms ({len(answer.content):,} bytes)",
                flush=True,
            )
    return times


def _p95(values: Sequence[float]) -> float:
    """Nearest rank: the value below which 95% of them lie."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
