"""`python -m services.score [run|migrate]`. A bad rules file stops the start with its reason."""

from __future__ import annotations

import sys
from pathlib import Path

from services.score.config import ScoreSettings
from services.score.handler import ScoreHandler
from services.score.repository import SCHEMA
from services.score.rules import load_rules
from shared.service import consumer_service_main
from shared.topics import EVENTS_ENRICHED

if __name__ == "__main__":
    sys.exit(
        consumer_service_main(
            service="score",
            load_settings=ScoreSettings,
            make_handler=lambda settings: ScoreHandler(load_rules(settings.rules_file)),
            subscriptions=[EVENTS_ENRICHED],
            migrations_dir=Path(__file__).parent / "migrations",
            schema=SCHEMA,
        )
    )
