"""`python -m services.router <command>`.

run            consume leads.lifecycle, crm.feedback and router.commands until SIGTERM
migrate        bring the `router` schema to the newest revision
history KEY    a lead's routing history (lead id or email): decisions, suppressions, breaches
check FILE     validate a routing file (exit 2 with file, line and field on an error)

A bad routing file stops the start with the file, line and field at fault.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path

from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.http import router_routes
from services.router.repository import SCHEMA, lead_history
from services.router.routing_config import RoutingFileError, load_routing
from services.router.sla_timers import SlaTimer
from shared.db import create_engine, create_sessionmaker
from shared.service import Companion, consumer_service_main
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE, ROUTER_COMMANDS


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 2:
        try:
            config = load_routing(Path(argv[1]))
        except RoutingFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        reps = sum(len(team.reps) for team in config.teams)
        print(f"{argv[1]}: version {config.version}, {len(config.teams)} teams, {reps} reps")
        return 0
    if argv[:1] == ["history"] and len(argv) == 2:
        return asyncio.run(_history(argv[1], RouterSettings()))
    try:
        settings = RouterSettings()
        routing = load_routing(settings.routing_file)  # fail before connecting to anything
    except RoutingFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return consumer_service_main(
        service="router",
        load_settings=lambda: settings,
        make_handler=lambda settings: RouterHandler(
            routing, sla_recheck=timedelta(seconds=settings.sla_recheck_s)
        ),
        subscriptions=[LEADS_LIFECYCLE, CRM_FEEDBACK, ROUTER_COMMANDS],
        migrations_dir=Path(__file__).parent / "migrations",
        schema=SCHEMA,
        make_companions=lambda settings, context: [
            Companion(
                "SLA timer",
                settings.sla_check_interval_s,
                SlaTimer(
                    sessions=context.sessions,
                    producer=context.producer,
                    settings=settings,
                    config=routing,
                ),
            )
        ],
        make_routes=lambda settings, sessions: router_routes(sessions),
        argv=argv,
    )


async def _history(key: str, settings: RouterSettings) -> int:
    engine = create_engine(settings.database, application_name="leadflow-router-history")
    try:
        async with create_sessionmaker(engine)() as session:
            found = await lead_history(session, key)
    finally:
        await engine.dispose()
    if found is None:
        print(f"the router never saw lead {key!r}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
