"""enrich throughput: raw events in, enriched events out, through the real broker and
PostgreSQL with the service's own handler and consumer runner (batches of 500, the file
firmographics provider, the sample accounts loaded, one consumer on 4 partitions).

The traffic is a realistic mix per visitor: anonymous page views, an identify with a work email
(which re-attributes nothing: the lead keeps its id), tracks, and 5% client retries of a
messageId. The clock runs from the first stored batch to the moment every message id is stored
and the outbox is empty (every output acknowledged), so process start and group join are left out.

Events/s moves with whatever else runs on the machine; the second figure, this process's CPU
time per event (handler, runner, decode/encode, produce: everything but PostgreSQL and the
broker), from the runner's start to the last acknowledgement, hardly does: compare changes by it.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from bench.figures import Figure, median
from bench.infra import BenchInfra, wait_until_handled
from services.enrich.config import DATA_DIR
from services.enrich.firmographics import FileProvider
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.loading import load_accounts
from services.enrich.references import References
from shared.codec import encode
from shared.consumer import ConsumerRunner
from shared.contracts import RawEvent
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.kafka import create_producer
from shared.settings import ConsumerSettings, DatabaseSettings, KafkaSettings
from shared.topics import ENRICH_COMMANDS, EVENTS_RAW

SECTION = "enrich"
VISITORS = 2_500
RUNS = 2
DOMAINS = ["acme-robotics.com", "globex.com", "initech.com", "hooli.io", "vandelay.co",
           "umbrella-health.com", "gmail.com", "smallshop.io"]  # fmt: skip
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def traffic(rng: random.Random) -> list[RawEvent]:
    events: list[RawEvent] = []
    for visitor in range(VISITORS):
        anonymous_id = f"anon-{visitor}-{uuid.uuid4().hex[:6]}"
        at = T0 + timedelta(seconds=visitor)

        def event(
            at: datetime = at, anonymous_id: str = anonymous_id, **fields: object
        ) -> RawEvent:
            return RawEvent.model_validate(
                {
                    "messageId": str(uuid.uuid4()),
                    "source": "website",
                    "receivedAt": at,
                    "timestamp": at,
                    "anonymousId": anonymous_id,
                    **fields,
                }
            )

        for path in rng.sample(["/", "/pricing", "/docs", "/blog", "/security"], 3):
            events.append(event(type="page", name=path, properties={"path": path}))
        domain = rng.choice(DOMAINS)
        events.append(
            event(
                type="identify",
                traits={
                    "email": f"p{visitor}@{domain}",
                    "title": "VP Sales",
                    "company": domain.split(".")[0].title(),
                },
            )
        )
        events.append(event(type="track", event=rng.choice(["Demo Requested", "Trial Started"])))
        if rng.random() < 0.05:
            events.append(events[-1])  # a client retry: same messageId
    return events


async def run(infra: BenchInfra) -> list[Figure]:
    rates: list[float] = []
    cpu: list[float] = []
    count = 0
    for seed in range(RUNS):
        rate, count, cpu_us = await _one_run(infra, random.Random(seed))
        rates.append(rate)
        cpu.append(cpu_us)
    return [
        Figure(
            SECTION,
            f"enrich events.raw -> events.enriched ({count} events incl. 5% retries, batch 500)",
            round(median(rates)),
            "events/s",
        ),
        Figure(
            SECTION,
            "enrich process CPU per event (handler + runner; not PostgreSQL or the broker)",
            round(median(cpu)),
            "us/event",
        ),
    ]


async def _one_run(infra: BenchInfra, rng: random.Random) -> tuple[float, int, float]:
    """(events/s by the clock, events sent, this process's CPU microseconds per event)."""
    url = await infra.fresh_database()
    prefix = await infra.fresh_topic_prefix()
    kafka = KafkaSettings(bootstrap_servers=infra.kafka_bootstrap, topic_prefix=prefix)
    events = traffic(rng)
    unique = len({e.message_id for e in events})
    producer = create_producer(kafka, client_id="bench-enrich")
    await producer.start()
    try:
        acks = [
            await producer.send(
                EVENTS_RAW.full_name(prefix), encode(e), key=e.partition_key.encode()
            )
            for e in events
        ]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()

    engine = create_engine(DatabaseSettings(url=SecretStr(url)), application_name="bench-enrich")
    sessions = create_sessionmaker(engine)
    references = References()
    async with unit_of_work(sessions) as session:
        await load_accounts(session, DATA_DIR / "accounts.csv")
        await references.refresh(session)
    runner = ConsumerRunner(
        service="enrich",
        subscriptions=[EVENTS_RAW, ENRICH_COMMANDS],
        handler=EnrichHandler(
            provider=FileProvider(DATA_DIR / "companies.csv"),
            references=references,
            policy=EnrichPolicy(),
            privacy_key=b"bench-privacy-key-of-32-bytes-at-least",
        ),
        sessions=sessions,
        schema="enrich",
        kafka=kafka,
        consumer=ConsumerSettings(max_batch_records=500),
    )
    cpu_started = time.process_time()
    task = asyncio.create_task(runner.run())
    try:
        handled, elapsed = await wait_until_handled(
            url,
            handled_sql="SELECT count(*) FROM enrich.seen_messages",
            outbox_sql="SELECT count(*) FROM enrich.outbox",
            expected=unique,
        )
        cpu_s = time.process_time() - cpu_started
    finally:
        runner.request_stop()
        await task
        await engine.dispose()
    return handled / elapsed, len(events), cpu_s / len(events) * 1e6
