"""`python -m services.router [run|migrate]`."""

from __future__ import annotations

import sys
from pathlib import Path

from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.repository import SCHEMA
from services.router.routing_config import load_routing
from shared.service import consumer_service_main
from shared.topics import LEADS_LIFECYCLE

if __name__ == "__main__":
    sys.exit(
        consumer_service_main(
            service="router",
            load_settings=RouterSettings,
            make_handler=lambda settings: RouterHandler(load_routing(settings.routing_file)),
            subscriptions=[LEADS_LIFECYCLE],
            migrations_dir=Path(__file__).parent / "migrations",
            schema=SCHEMA,
        )
    )
