"""`python -m services.ingest <command>` (`--help` lists them): the tracking API on the shell.

On a stop signal the server stops accepting, lets requests in flight finish (each answers only
after its broker acknowledgement), then the app's lifespan stops the producer; exit code 0.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.ingest.api import create_app
from services.ingest.config import IngestSettings
from shared.resources import Resources
from shared.service import HttpApp, Running, Service


@asynccontextmanager
async def start(resources: Resources[IngestSettings]) -> AsyncIterator[Running]:
    settings = resources.settings
    yield Running(
        app=HttpApp(
            app=create_app(settings),
            host=settings.host,
            port=settings.port,
            setting="LEADFLOW_INGEST_PORT",
        )
    )


SERVICE = Service(
    name="ingest",
    summary="The Segment-compatible tracking API and the lead-list upload.",
    settings=IngestSettings,
    start=start,
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
