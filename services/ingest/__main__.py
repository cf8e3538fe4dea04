"""`python -m services.ingest <command>` (`--help` lists them): the tracking API on the shell.

On a stop signal the server stops accepting, lets requests in flight finish (each answers only
after its broker acknowledgement), then the app's lifespan stops the producer; exit code 0.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.ingest.api import create_app, health_app
from services.ingest.config import IngestSettings
from services.ingest.publisher import EventPublisher
from shared.resources import Resources
from shared.service import HttpApp, Running, Service


@asynccontextmanager
async def start(resources: Resources[IngestSettings]) -> AsyncIterator[Running]:
    settings = resources.settings
    publisher = EventPublisher(settings.kafka, timeout_s=settings.publish_timeout_s)
    yield Running(
        apps=[
            HttpApp(
                app=create_app(settings, publisher),
                host=settings.host,
                port=settings.port,
                setting="LEADFLOW_INGEST_PORT",
                lifespan=True,
                server_options={
                    # The client address the per-address limits count (`admission`).
                    "proxy_headers": True,
                    "forwarded_allow_ips": settings.trusted_proxies,
                    "limit_concurrency": settings.max_connections,
                },
            ),
            HttpApp(
                app=health_app(publisher),
                host=settings.health_host,
                port=settings.health_port,
                setting="LEADFLOW_INGEST_HEALTH_PORT",
            ),
        ]
    )


SERVICE = Service(
    name="ingest",
    summary="The Segment-compatible tracking API, the lead-list upload and CRM feedback.",
    settings=IngestSettings,
    start=start,
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
