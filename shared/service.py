"""Entry point plumbing shared by the consuming services (`python -m services.<name>`).

`consumer_service_main` gives each service the same command line:

    python -m services.<name> [run]     consume until SIGTERM/SIGINT, then drain and exit 0
    python -m services.<name> migrate   bring the service's schema to the newest revision

Signal handlers only ask the runner to stop; the runner finishes the batch in flight, commits,
leaves the consumer group, and only then does the process exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from shared.consumer import ConsumerRunner, Handler
from shared.db import create_engine, create_sessionmaker
from shared.health import HealthServer
from shared.migrations import upgrade_to_head
from shared.settings import ConsumingServiceSettings
from shared.telemetry import configure_logging
from shared.topics import Topic

S = TypeVar("S", bound=ConsumingServiceSettings)

log = logging.getLogger(__name__)


def consumer_service_main(
    *,
    service: str,
    load_settings: Callable[[], S],
    make_handler: Callable[[S], Handler],
    subscriptions: list[Topic],
    migrations_dir: Path,
    schema: str,
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
    asyncio.run(
        _serve(
            service=service,
            settings=settings,
            handler=make_handler(settings),
            subscriptions=subscriptions,
            schema=schema,
        )
    )
    return 0


async def _serve(
    *,
    service: str,
    settings: ConsumingServiceSettings,
    handler: Handler,
    subscriptions: list[Topic],
    schema: str,
) -> None:
    engine = create_engine(settings.database, application_name=f"leadflow-{service}")
    runner = ConsumerRunner(
        service=service,
        subscriptions=subscriptions,
        handler=handler,
        sessions=create_sessionmaker(engine),
        schema=schema,
        kafka=settings.kafka,
        consumer=settings.consumer,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    health = HealthServer(
        host=settings.health_host, port=settings.health_port, readiness=runner.readiness
    )
    await health.start()
    log.info("started; health on %s:%d", settings.health_host, settings.health_port)
    try:
        await runner.run()
    finally:
        await health.stop()
        await engine.dispose()
        log.info("stopped")
