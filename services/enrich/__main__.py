"""`python -m services.enrich [run|migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.enrich.config import EnrichSettings
from services.enrich.handler import EnrichHandler
from services.enrich.repository import SCHEMA
from shared.service import consumer_service_main
from shared.topics import EVENTS_RAW

if __name__ == "__main__":
    sys.exit(
        consumer_service_main(
            service="enrich",
            load_settings=EnrichSettings,
            make_handler=lambda _settings: EnrichHandler(),
            subscriptions=[EVENTS_RAW],
            migrations_dir=Path(__file__).parent / "migrations",
            schema=SCHEMA,
        )
    )
