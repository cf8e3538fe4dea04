"""`python -m services.console <command>` (`--help` lists them): the console on the shell.

`run` consumes the topics into the read model and serves the pages on `web_host:web_port`
(health and metrics on the health port, as every service); its housekeeping forgets the erased
leads' records past their retention (`housekeeping`). `add-person` makes a local account
and prints its password once; `reset-password` prints a new one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from services.console import people
from services.console.config import ROLES, ConsoleSettings
from services.console.config_client import ConfigClient
from services.console.handler import ReadModelHandler
from services.console.health import HealthWatch
from services.console.housekeeping import housekeeping
from services.console.repository import SCHEMA
from services.console.score_client import ScoreClient
from services.console.web.app import console_app
from services.console.web.editing import Editors
from shared.companions import Companion
from shared.db import unit_of_work
from shared.operator import OperatorCommand, OperatorError, Report
from shared.resources import Resources
from shared.service import Database, HttpApp, Running, Service
from shared.topics import (
    CRM_FEEDBACK,
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    PRIVACY_ERASURES,
    ROUTING_NURTURE,
    ROUTING_SDR,
)

HEALTH_READ_INTERVAL_S = 15.0
# httpx logs every request at INFO: the health reads every 15 s would fill the log, and a
# request's address may name a lead.
logging.getLogger("httpx").setLevel(logging.WARNING)
SESSION_SWEEP_INTERVAL_S = 3600.0


@asynccontextmanager
async def start(resources: Resources[ConsoleSettings]) -> AsyncIterator[Running]:
    settings = resources.settings
    sessions = resources.database()
    token = settings.score_api_token
    score = ScoreClient(
        str(settings.score_api_url), token.get_secret_value() if token is not None else None
    )
    health = HealthWatch({name: str(url) for name, url in settings.metrics_urls.items()})
    editors = Editors(
        rules=ConfigClient(
            service="score", kind="rules", base_url=str(settings.score_api_url),
            token=token.get_secret_value() if token is not None else None,
        ),
        routing=ConfigClient(
            service="router", kind="routing", base_url=str(settings.router_api_url),
            token=_secret(settings.router_api_token),
        ),
    )  # fmt: skip

    async def forget_expired_sessions() -> None:
        async with unit_of_work(sessions) as session:
            await people.forget_expired_sessions(session, at=datetime.now(UTC))

    try:
        yield Running(
            handler=ReadModelHandler(),
            companions=[
                Companion.every("service health", HEALTH_READ_INTERVAL_S, health.read_all),
                Companion.every(
                    "expired sessions", SESSION_SWEEP_INTERVAL_S, forget_expired_sessions
                ),
                Companion.every(
                    "housekeeping",
                    settings.housekeeping_interval_s,
                    lambda: housekeeping(sessions=sessions, settings=settings),
                ),
            ],
            apps=[
                HttpApp(
                    console_app(
                        settings=settings,
                        sessions=sessions,
                        score=score,
                        health=health,
                        editors=editors,
                    ),
                    host=settings.web_host,
                    port=settings.web_port,
                    setting="LEADFLOW_CONSOLE_WEB_PORT",
                )
            ],
        )
    finally:
        await score.close()
        await health.close()
        await editors.rules.close()
        await editors.routing.close()


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


async def add_person(resources: Resources[ConsoleSettings], args: argparse.Namespace) -> Report:
    password = people.new_password()
    async with unit_of_work(resources.database()) as session:
        added = await people.add_local_person(
            session, username=args.username, role=args.role, password=password
        )
        if not added:
            raise OperatorError(
                f"{args.username!r} exists already (reset-password gives a new one)"
            )
        await people.audit(
            session, username="(operator)", action="added person", detail=args.username
        )
    return Report(
        text=f"{args.username} ({args.role}) can sign in with the password: {password}\n"
        "(shown once; it is stored only as an argon2 hash)",
        data={"username": args.username, "role": args.role, "password": password},
    )


async def reset_password(resources: Resources[ConsoleSettings], args: argparse.Namespace) -> Report:
    password = people.new_password()
    async with unit_of_work(resources.database()) as session:
        if not await people.set_password(session, username=args.username, password=password):
            raise OperatorError(f"no person {args.username!r}")
        await people.audit(
            session, username="(operator)", action="reset password", detail=args.username
        )
    return Report(
        text=f"new password of {args.username}: {password}\n(shown once)",
        data={"username": args.username, "password": password},
    )


def _person_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--role", choices=ROLES, default="viewer")


SERVICE = Service(
    name="console",
    summary="The funnel, speed-to-lead and every lead's story, in a browser, for RevOps.",
    settings=ConsoleSettings,
    start=start,
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[
        LEADS_LIFECYCLE,
        LEADS_SCORED,
        ROUTING_SDR,
        ROUTING_NURTURE,
        CRM_FEEDBACK,
        PRIVACY_ERASURES,
    ],
    commands=[
        OperatorCommand(
            name="add-person",
            help="make a local account (prints its password once)",
            arguments=_person_arguments,
            run=add_person,
        ),
        OperatorCommand(
            name="reset-password",
            help="give a local account a new password (printed once)",
            arguments=lambda parser: parser.add_argument("username"),
            run=reset_password,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
