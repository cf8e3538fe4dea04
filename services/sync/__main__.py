"""`python -m services.sync <command>` (`--help` lists them): sync on the shell.

`run` loads the destinations file (`LEADFLOW_SYNC_DESTINATIONS_FILE`; a bad one stops the start,
exit 2, naming the file and the field), then consumes the routing topics, `leads.lifecycle` and
`privacy.erasures` into the delivery queue (`handler`) while its companions send it: the
deliveries (`delivery`: leases, lanes), the holds (routing events held for an earlier sequence,
released when `reorder_wait_s` runs out) and housekeeping.

Commands: `destinations` (per destination: queued, oldest queued age, retrying, dead letters,
delivered, last delivery, last error; `--json`), `replay --destination NAME (--all |
--event-id ID)` (dead letters back to the end of their lanes), and the runner's own
(`reset-offsets`, `replay-dead-letters`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.sync import repository
from services.sync.config import SyncSettings
from services.sync.delivery import Deliveries
from services.sync.destinations import load_destinations
from services.sync.handler import SyncHandler, release_expired_holds
from services.sync.operations import destinations_report, replay
from shared.companions import Companion
from shared.db import unit_of_work
from shared.operator import OperatorCommand
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.topics import (
    LEADS_LIFECYCLE,
    PRIVACY_ERASURES,
    ROUTING_NURTURE,
    ROUTING_SDR,
    ROUTING_WITHDRAWALS,
)

log = logging.getLogger(__name__)

HOLDS_BATCH = 500


@asynccontextmanager
async def start(resources: Resources[SyncSettings]) -> AsyncIterator[Running]:
    settings = resources.settings
    sessions = resources.database()
    destinations = load_destinations(settings.destinations_file, os.environ)
    if not destinations:
        log.warning("no destinations in %s: events are consumed and delivered nowhere",
                    settings.destinations_file)  # fmt: skip
    wait = timedelta(seconds=settings.reorder_wait_s)
    deliveries = Deliveries(destinations, sessions=sessions, settings=settings)

    async def release_holds() -> float:
        async with unit_of_work(sessions) as session:
            released = await release_expired_holds(
                session, destinations, now=datetime.now(UTC), wait=wait, limit=HOLDS_BATCH
            )
        # A full round leaves more: at once; else a tenth of the wait (a hold runs out at most
        # that late), at least every 100 ms.
        return 0.0 if released >= HOLDS_BATCH else max(settings.reorder_wait_s / 10, 0.1)

    async def housekeeping() -> None:
        async with unit_of_work(sessions) as session:
            await repository.ERASED_LEADS.forget_older_than(
                session, days=settings.erased_leads_retention_days
            )
            await repository.forget_idle_lead_orders(session, days=settings.lead_order_idle_days)
            await repository.forget_old_dead_letters(
                session, days=settings.dead_letter_retention_days
            )

    try:
        yield Running(
            handler=SyncHandler(destinations, reorder_wait=wait),
            companions=[
                Companion(name="deliveries", round=deliveries.round, retry_after_s=1.0),
                Companion(name="holds", round=release_holds, retry_after_s=1.0),
                Companion.every("housekeeping", settings.housekeeping_interval_s, housekeeping),
            ],
        )
    finally:
        await deliveries.close()


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--destination", required=True, help="the destination's name")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter of the destination")
    which.add_argument("--event-id", help="the dead letters of one event (its idempotency key)")


SERVICE = Service(
    name="sync",
    summary="Delivers routing decisions, withdrawals, stage changes and erasures to CRMs over "
    "HTTP (signed webhooks), in order per lead.",
    settings=SyncSettings,
    start=start,
    check_files=lambda settings: load_destinations(settings.destinations_file, os.environ),
    database=Database(schema=repository.SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[
        ROUTING_SDR,
        ROUTING_NURTURE,
        ROUTING_WITHDRAWALS,
        LEADS_LIFECYCLE,
        PRIVACY_ERASURES,
    ],
    commands=[
        OperatorCommand(
            name="destinations",
            help="per destination: queued, oldest queued age, retrying, dead letters, "
            "delivered, last delivery, last error",
            run=destinations_report,
        ),
        OperatorCommand(
            name="replay",
            help="put a destination's dead letters back in its queue (--all, or --event-id ID)",
            arguments=_replay_arguments,
            run=replay,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
