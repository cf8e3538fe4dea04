"""`python -m services.router <command>` (`--help` lists them): the router on the shell.

A bad routing file stops the start with the file, line and field at fault.
HTTP (health port): `GET /v1/leads/{lead id or email}/routing` (see http.py), and the API's
documentation at `/docs`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.history_view import render_history
from services.router.http import router_api
from services.router.repository import SCHEMA, lead_history
from services.router.routing_config import load_routing
from services.router.sla_timers import SlaTimer
from shared.companions import Companion
from shared.operator import OperatorCommand, OperatorError, Report
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE, ROUTER_COMMANDS


@asynccontextmanager
async def start(resources: Resources[RouterSettings]) -> AsyncIterator[Running]:
    settings = resources.settings
    routing = load_routing(settings.routing_file)
    sessions = resources.database()
    timer = SlaTimer(
        sessions=sessions, commands=resources.commands, settings=settings, config=routing
    )
    yield Running(
        handler=RouterHandler(
            routing,
            sla_recheck=timedelta(seconds=settings.sla_recheck_s),
            backfill_horizon=timedelta(hours=settings.backfill_horizon_h),
        ),
        companions=[
            Companion(
                name="SLA timer", round=timer.round, retry_after_s=settings.sla_check_interval_s
            )
        ],
        routers=[router_api(sessions)],
    )


async def history(resources: Resources[RouterSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        found = await lead_history(session, args.lead)
    if found is None:
        raise OperatorError(f"the router never saw lead {args.lead!r}")
    return Report(text=render_history(found), data=found)


async def check(resources: Resources[RouterSettings], args: argparse.Namespace) -> Report:
    config = load_routing(args.file)
    reps = sum(len(team.reps) for team in config.teams)
    return Report(
        text=f"{args.file}: version {config.version}, {len(config.teams)} teams, {reps} reps",
        data={
            "file": str(args.file),
            "version": config.version,
            "teams": len(config.teams),
            "reps": reps,
        },
    )


SERVICE = Service(
    name="router",
    summary="Routes MQLs to the right SDR at once and the rest to nurture tracks, with SLA timers.",
    settings=RouterSettings,
    start=start,
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[LEADS_LIFECYCLE, CRM_FEEDBACK, ROUTER_COMMANDS],
    commands=[
        OperatorCommand(
            name="history",
            help="a lead's routing history (lead id or email): decisions, suppressions, breaches",
            arguments=lambda parser: parser.add_argument("lead", help="lead id or email"),
            run=history,
        ),
        OperatorCommand(
            name="check",
            help="validate a routing file (exit 2 with the file, line and field on an error)",
            arguments=lambda parser: parser.add_argument("file", type=Path),
            run=check,
            needs_database=False,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
