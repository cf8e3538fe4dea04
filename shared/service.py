"""Entry point plumbing shared by the consuming services (`python -m services.<name>`).

`consumer_service_main` gives each service the same command line:

    python -m services.<name> [run]     consume until SIGTERM/SIGINT, then drain and exit 0
    python -m services.<name> migrate   bring the service's schema to the newest revision

Signal handlers only ask the runner to stop; the runner finishes the batch in flight, commits,
leaves the consumer group, and only then does the process exit.

A service may run periodic companions beside its consumer (score's decay sweep, router's SLA
timers, enrich's re-enrichment): `Companion`s, each run every `interval_s` by `every`. They get
the database and a producer through `ServiceContext`; work whose effects must be exactly-once
goes through the service's own command topic and consumer, never straight to an output topic.
Companions are cancelled once the runner has drained.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import uvloop
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import BaseRoute

from shared.consumer import ConsumerRunner, Handler
from shared.db import create_engine, create_sessionmaker
from shared.health import HealthServer
from shared.kafka import create_producer
from shared.migrations import upgrade_to_head
from shared.runtime import settle_garbage_collector
from shared.settings import ConsumingServiceSettings
from shared.telemetry import configure_logging
from shared.topics import Topic

S = TypeVar("S", bound=ConsumingServiceSettings)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceContext:
    """What companions may use: the service's sessions and a producer (acks=all)."""

    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer


@dataclass(frozen=True)
class Companion:
    name: str
    interval_s: float
    work: Callable[[], Awaitable[object]]


async def every(interval_s: float, work: Callable[[], Awaitable[object]], *, name: str) -> None:
    """Run `work` now and then every `interval_s` until cancelled; a failure is logged, never
    fatal (the next round tries again)."""
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying in %.0fs", name, interval_s)
        await asyncio.sleep(interval_s)


def consumer_service_main(
    *,
    service: str,
    load_settings: Callable[[], S],
    make_handler: Callable[[S], Handler],
    subscriptions: list[Topic],
    migrations_dir: Path,
    schema: str,
    make_companions: Callable[[S, ServiceContext], Sequence[Companion]] | None = None,
    make_routes: Callable[[S, async_sessionmaker[AsyncSession]], Sequence[BaseRoute]] | None = None,
    argv: list[str] | None = None,
) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m services.{service}")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "migrate"])
    command = parser.parse_args(argv).command
    settings = load_settings()
    configure_logging(settings.log_level, service=service)
    if command == "migrate":
        upgrade_to_head(
            migrations_dir=migrations_dir,
            schema=schema,
            database_url=settings.database.url.get_secret_value(),
        )
        log.info("schema %s is at the newest revision", schema)
        return 0
    # uvloop: the event loop and its sockets in C; a consumer spends much of its CPU in socket
    # writes and polling (to PostgreSQL and the broker), measured ~15% of a service's CPU here.
    uvloop.run(
        serve_consumer(
            service=service,
            settings=settings,
            handler=make_handler(settings),
            subscriptions=subscriptions,
            schema=schema,
            companions=(
                (lambda context: make_companions(settings, context)) if make_companions else None
            ),
            routes=(lambda sessions: make_routes(settings, sessions)) if make_routes else None,
        )
    )
    return 0


async def serve_consumer(
    *,
    service: str,
    settings: ConsumingServiceSettings,
    handler: Handler,
    subscriptions: list[Topic],
    schema: str,
    companions: Callable[[ServiceContext], Sequence[Companion]] | None = None,
    routes: Callable[[async_sessionmaker[AsyncSession]], Sequence[BaseRoute]] | None = None,
) -> None:
    """Run the consumer (and companions) until SIGTERM/SIGINT; drain, then stop everything."""
    engine = create_engine(settings.database, application_name=f"leadflow-{service}")
    sessions = create_sessionmaker(engine)
    runner = ConsumerRunner(
        service=service,
        subscriptions=subscriptions,
        handler=handler,
        sessions=sessions,
        schema=schema,
        kafka=settings.kafka,
        consumer=settings.consumer,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    health = HealthServer(
        host=settings.health_host,
        port=settings.health_port,
        readiness=runner.readiness,
        routes=routes(sessions) if routes else (),
    )
    producer: AIOKafkaProducer | None = None
    tasks: list[asyncio.Task[None]] = []
    if companions is not None:
        producer = create_producer(settings.kafka, client_id=f"leadflow-{service}-companions")
        await producer.start()
        context = ServiceContext(sessions=sessions, producer=producer)
        tasks = [
            asyncio.create_task(every(c.interval_s, c.work, name=c.name), name=c.name)
            for c in companions(context)
        ]
    await health.start()
    log.info("started; health on %s:%d", settings.health_host, settings.health_port)
    settle_garbage_collector()
    try:
        await runner.run()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if producer is not None:
            await producer.stop()
        await health.stop()
        await engine.dispose()
        log.info("stopped")
