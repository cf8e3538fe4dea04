"""The running enrich service: the consumer runner plus enrich's periodic work.

Built like `shared.service.consumer_service_main` (signal handlers only ask the runner to stop;
it drains and commits), with three companions that are cancelled once the runner has stopped:
the re-enrichment sweeper, housekeeping and the reference reload (see `background`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from services.enrich import background
from services.enrich.config import EnrichSettings
from services.enrich.firmographics import FileProvider, FirmographicsProvider
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.loading import load_accounts, load_suppressions
from services.enrich.references import References
from services.enrich.repository import SCHEMA
from services.enrich.vendor import HttpVendorProvider
from shared.consumer import ConsumerRunner
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.health import HealthServer
from shared.kafka import create_producer
from shared.runtime import settle_garbage_collector
from shared.service import every
from shared.topics import ENRICH_COMMANDS, EVENTS_RAW

log = logging.getLogger(__name__)


def make_provider(settings: EnrichSettings) -> FirmographicsProvider | None:
    if settings.firmographics_provider == "file":
        return FileProvider(settings.companies_file)
    if settings.firmographics_provider == "http":
        return HttpVendorProvider(
            base_url=settings.vendor_url,
            api_key=settings.vendor_api_key.get_secret_value(),
            timeout_s=settings.vendor_timeout_s,
            retries=settings.vendor_retries,
            cache_ttl_s=settings.vendor_cache_ttl_s,
            breaker_failures=settings.vendor_breaker_failures,
            breaker_reset_s=settings.vendor_breaker_reset_s,
        )
    return None


async def serve(settings: EnrichSettings) -> None:
    engine = create_engine(settings.database, application_name="leadflow-enrich")
    sessions = create_sessionmaker(engine)
    provider = make_provider(settings)
    references = References(fuzzy_threshold=settings.account_fuzzy_threshold)
    async with unit_of_work(sessions) as session:
        if settings.accounts_file:
            log.info(
                "accounts: %d from %s",
                await load_accounts(session, settings.accounts_file),
                settings.accounts_file,
            )
        if settings.suppressions_file:
            count = await load_suppressions(session, settings.suppressions_file)
            log.info("suppressions: %d from %s", count, settings.suppressions_file)
    # Accounts and suppressions are in memory before the first batch is handled.
    await background.refresh_references(sessions=sessions, references=references)
    handler = EnrichHandler(
        provider=provider,
        references=references,
        policy=EnrichPolicy(
            anonymous_ids_per_week=settings.anonymous_ids_per_week,
            max_anonymous_history=settings.max_anonymous_history,
            lookup_budget_s=settings.lookup_budget_s,
        ),
    )
    settle_garbage_collector()  # startup is done: references loaded, handler built
    runner = ConsumerRunner(
        service="enrich",
        subscriptions=[EVENTS_RAW, ENRICH_COMMANDS],
        handler=handler,
        sessions=sessions,
        schema=SCHEMA,
        kafka=settings.kafka,
        consumer=settings.consumer,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
    producer = create_producer(settings.kafka, client_id="leadflow-enrich-sweeper")
    await producer.start()
    health = HealthServer(
        host=settings.health_host, port=settings.health_port, readiness=runner.readiness
    )
    companions = [
        asyncio.create_task(
            every(
                settings.reference_refresh_s,
                lambda: background.refresh_references(sessions=sessions, references=references),
                name="reference reload",
            )
        ),
        asyncio.create_task(
            every(
                settings.housekeeping_interval_s,
                lambda: background.housekeeping(sessions=sessions, settings=settings),
                name="housekeeping",
            )
        ),
    ]
    if provider is not None:
        companions.append(
            asyncio.create_task(
                every(
                    settings.reenrich_interval_s,
                    lambda: background.sweep_pending_enrichment(
                        sessions=sessions, provider=provider, producer=producer, settings=settings
                    ),
                    name="re-enrichment",
                )
            )
        )
    await health.start()
    log.info("started; health on %s:%d", settings.health_host, settings.health_port)
    try:
        await runner.run()
    finally:
        for task in companions:
            task.cancel()
        for task in companions:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await producer.stop()
        if isinstance(provider, HttpVendorProvider):
            await provider.close()
        await health.stop()
        await engine.dispose()
        log.info("stopped")
