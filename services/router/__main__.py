"""`python -m services.router <command>` (`--help` lists them): the router on the shell.

The routing is versioned configuration (`routing_versions`): at start the router adopts its
routing file (`LEADFLOW_ROUTER_ROUTING_FILE`). A file whose content changed since it was last
adopted is imported as a new version and published: the file wins at deploy time. An unchanged
file changes nothing: what people published since through the API stays live. A bad routing
file stops the start with the file, line and field at fault, before the database is asked
anything. Every replica then follows publications at its next batch, without a restart.

The consumer also takes the router's part of each erasure (`privacy.erasures`: the leads' rows
deleted, a `privacy.reports` report; `handler`), and drops what arrives about erased leads later.
Housekeeping (a companion, `housekeeping`) scrubs decisions' personal parts past their retention
and forgets the erased leads' records past theirs.

Commands: `check FILE` (validate a routing file), `versions` (the versions, the live one and
the publications), `publish VERSION` (make a version live: an earlier one is a rollback),
`history LEAD`. HTTP (API port): the lead history, the routing versions, reps and previews (see
http.py), and the API's documentation at `/docs`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.history_view import render_history
from services.router.housekeeping import housekeeping
from services.router.http import router_api
from services.router.repository import SCHEMA, lead_history
from services.router.routing_config import load_routing, read_routing_file
from services.router.routing_versions import ROUTING, adopt_routing_file
from services.router.sla_timers import SlaTimer
from shared.companions import Companion
from shared.consumer.failures import retried_while_transient
from shared.db import unit_of_work
from shared.operator import OperatorCommand, OperatorError, Report
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.simulations import Simulations
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE, PRIVACY_ERASURES, ROUTER_COMMANDS
from shared.versions_view import publications_table, versions_table


@asynccontextmanager
async def start(resources: Resources[RouterSettings]) -> AsyncIterator[Running]:
    """The routing file adopted (module doc); the handler, the SLA timer and the API read the
    live routing version (`ROUTING`) from then on. Simulations still running at shutdown are
    stopped (they end `failed`)."""
    settings = resources.settings
    sessions = resources.database()
    await retried_while_transient(
        lambda: adopt_routing_file(sessions, settings.routing_file, routing=ROUTING),
        what="adopting the routing file",
        give_up_after_s=settings.consumer.retry_give_up_after_s,
    )
    simulations = Simulations(schema=SCHEMA, sessions=sessions)
    timer = SlaTimer(
        sessions=sessions, commands=resources.commands, settings=settings, routing=ROUTING
    )
    try:
        yield Running(
            handler=RouterHandler(
                ROUTING,
                sla_recheck=timedelta(seconds=settings.sla_recheck_s),
                backfill_horizon=timedelta(hours=settings.backfill_horizon_h),
            ),
            companions=[
                Companion(
                    name="SLA timer",
                    round=timer.round,
                    retry_after_s=settings.sla_check_interval_s,
                ),
                Companion.every(
                    "housekeeping",
                    settings.housekeeping_interval_s,
                    lambda: housekeeping(sessions=sessions, settings=settings),
                ),
            ],
            routers=router_api(sessions, routing=ROUTING, simulations=simulations),
        )
    finally:
        await simulations.close()


async def history(resources: Resources[RouterSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        found = await lead_history(session, args.lead)
    if found is None:
        raise OperatorError(f"the router never saw lead {args.lead!r}")
    return Report(text=render_history(found), data=found)


async def versions(resources: Resources[RouterSettings], args: argparse.Namespace) -> Report:
    async with resources.database()() as session:
        live = await ROUTING.live_version(session)
        listed = await ROUTING.versions(session, limit=args.limit)
        publications = await ROUTING.publications(session, limit=10)
    text = (
        versions_table(listed, live=live)
        if listed
        else "no routing version yet: the router publishes its routing file when it starts"
    )
    if publications:
        text += "\n\nlatest publications:\n" + publications_table(publications)
    data = {"live": live, "versions": [asdict(v) for v in listed],
            "publications": [asdict(p) for p in publications]}  # fmt: skip
    return Report(text=text, data=data)


async def publish(resources: Resources[RouterSettings], args: argparse.Namespace) -> Report:
    by = args.by or os.environ.get("USER") or "operator"
    async with unit_of_work(resources.database()) as session:
        try:
            publication = await ROUTING.publish(session, args.version, by=by, note=args.note or "")
        except LookupError as exc:
            raise OperatorError(str(exc)) from None
    text = (
        f"routing version {publication.version} is live (was {publication.previous or 'none'}); "
        "every replica routes with it from its next batch"
    )
    return Report(text=text, data=asdict(publication))


def _versions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=20, help="how many versions (newest first)")


def _publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("version", help="the version to make live (e.g. 3)")
    parser.add_argument("--note", help="why (kept in the publication history)")
    parser.add_argument("--by", help="who publishes (default: $USER)")


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
    check_files=lambda settings: read_routing_file(settings.routing_file),
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[LEADS_LIFECYCLE, CRM_FEEDBACK, ROUTER_COMMANDS, PRIVACY_ERASURES],
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
        OperatorCommand(
            name="versions",
            help="the routing versions (which is live, who saved them and why) and the latest "
            "publications",
            arguments=_versions_arguments,
            run=versions,
        ),
        OperatorCommand(
            name="publish",
            help="make a routing version live in every replica (an earlier one: a rollback)",
            arguments=_publish_arguments,
            run=publish,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
