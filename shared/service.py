"""The service shell: every service is a `Service`, and `python -m services.<name>` is its
`main`. There is no other way to start a service, schedule its periodic work, send its commands
or add an operator command.

The command line, the same for every service (`--help` lists them all, with their help):

    python -m services.<name> run        serve until SIGTERM/SIGINT, then drain and exit 0
    python -m services.<name> migrate    bring the service's schema to the newest revision
    python -m services.<name> <command>  an operator command the service registers
                                         (`--json` prints its result as JSON); a consuming
                                         service also has `reset-offsets` and
                                         `replay-dead-letters` (shared.consumer.operations)

`run`, in order:
1. Settings are read (`shared.settings.load_settings`: a missing or bad setting is one line
   naming its variable, exit 2) and logging is configured.
2. The service's configuration files are read and checked (`Service.check_files`): a bad one
   is one line naming the file, line and field, exit 2, before anything connects.
   The database engine is created (a service with a schema) and the command sender (its
   producer starts at the first command sent). The schema must be at the code's revision or
   newer (`shared.migrations.wait_for_schema`): a pod started before the migrate Job finished
   waits up to `SCHEMA_WAIT_S` for it, then exits 2 naming both revisions (and is restarted).
3. The service's start-up hook (`Service.start`, an async context manager) loads what the
   service needs before its first message (rules, reference data, clients) and yields
   `Running`: the handler of its consumer, its companions, its HTTP endpoints. Whatever it
   opened, it closes when the context exits, after everything below has stopped.
4. The HTTP servers listen (the consuming services: health, readiness and metrics on
   `health_host:health_port`, and their own endpoints with `/docs` on `api_host:api_port`, for
   authenticated clients only: `shared.service_api`; ingest: its public app, and its health
   app on a port of its own).
   A port in use is one line naming it, exit 2.
5. Companions start (`shared.companions`), then the consumer runner (or, for an HTTP-only
   service, the server alone) runs until a stop signal.

Stopping: signal handlers only ask to stop. The runner finishes the batch in flight, commits,
and leaves the consumer group; a drain longer than `shutdown_drain_timeout_s` is cut (logged,
the batch's offsets left uncommitted: it is redelivered, and skipped where it was stored). Then
companions are cancelled, the HTTP server stops (requests in flight finish), the start-up hook's
context exits, the command sender and the engine close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson
import uvloop
from fastapi import APIRouter, FastAPI
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.commands import CommandSender
from shared.companions import Companion, run_companion
from shared.config_files import ConfigFileError
from shared.consumer import ConsumerRunner, Handler
from shared.consumer.operations import runner_commands
from shared.db import create_engine, create_sessionmaker
from shared.http import HttpServer, PortInUse, create_api, health_router
from shared.migrations import upgrade_to_head, wait_for_schema
from shared.operator import OperatorCommand, OperatorError, Report
from shared.resources import Resources
from shared.runtime import settle_garbage_collector
from shared.service_api import serve_clients, unauthenticated_routes
from shared.settings import (
    ConsumingServiceSettings,
    DatabaseSettings,
    ServiceSettings,
    SettingsError,
    load_settings,
)
from shared.telemetry import configure_logging
from shared.topics import Topic

S = TypeVar("S", bound=ServiceSettings)

# How long a starting service waits for the migrate Job to bring its schema to the code's
# revision before it exits (and is restarted): within the startup probe's 60 s.
SCHEMA_WAIT_S = 45.0


class SchemaBehind(Exception):
    """The service's schema is older than its code: it must be migrated first."""


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Database:
    """The schema a service owns and the folder of its migrations."""

    schema: str
    migrations: Path


@dataclass(frozen=True)
class HttpApp:
    """An application served on an address of its own (ingest's tracking API, and its health
    port with `shared.http.health_router`). `lifespan`: its start-up and shut-down run (what it
    holds, e.g. ingest's producer). `server_options`: uvicorn's, e.g. the trusted proxies."""

    app: FastAPI
    host: str
    port: int
    setting: str  # the variable that sets the port, named when it is in use
    lifespan: bool = False
    server_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Running:
    """What a service's start-up hook hands the shell to run.

    A consuming service gives its `handler` (and may add `routers`: its own endpoints, served on
    its API port to authenticated clients, each route naming its scope with
    `shared.service_api.requires`). An HTTP service gives its `apps` instead; a consuming
    service may give apps as well (the console's pages, which authenticate people, not
    clients), served beside its health and API ports."""

    handler: Handler | None = None
    companions: Sequence[Companion] = ()
    routers: Sequence[APIRouter] = ()
    apps: Sequence[HttpApp] = ()


StartUp = Callable[[Resources[S]], AbstractAsyncContextManager[Running]]
"""The life-cycle hook: loads at start-up, yields `Running`, releases at shut-down."""


@dataclass(frozen=True)
class Service(Generic[S]):
    """A leadflow service: its name, what it reads, how it starts, what operators may ask."""

    name: str
    summary: str
    settings: type[S]
    start: StartUp[S]
    database: Database | None = None
    subscriptions: Sequence[Topic] = ()
    commands: Sequence[OperatorCommand[S]] = field(default=())
    # Reads and validates the service's configuration files from its settings, raising
    # ConfigFileError: run before anything connects, so a bad file stops the start at once
    # instead of after the wait for the database and its schema. The start-up hook reads them
    # again (the check keeps nothing).
    check_files: Callable[[S], object] | None = None

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The command line (see the module doc); returns the exit code."""
        parser = self._parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        try:
            settings = load_settings(self.settings)
        except SettingsError as exc:
            return _fail(str(exc), exit_code=2)
        configure_logging(settings.log_level, service=self.name)
        if args.command == "run":
            try:
                # uvloop: the event loop and its sockets in C; a consumer spends much of its
                # CPU in socket writes and polling, measured ~15% of a service's CPU here.
                uvloop.run(self.serve(settings))
            except (ConfigFileError, SchemaBehind) as exc:
                return _fail(str(exc), exit_code=2)
            except PortInUse as exc:
                return _fail(
                    f"{self.name} cannot listen: {exc}; is {self.name} already running? "
                    "(`make status` shows the local stack)",
                    exit_code=2,
                )
            return 0
        if args.command == "migrate":
            database = self._database(settings)
            assert self.database is not None
            upgrade_to_head(
                migrations_dir=self.database.migrations,
                schema=self.database.schema,
                database_url=database.url.get_secret_value(),
            )
            log.info("schema %s is at the newest revision", self.database.schema)
            return 0
        command = next(c for c in self._commands() if c.name == args.command)
        return asyncio.run(self._operate(command, settings, args))

    async def serve(self, settings: S, *, stopping: asyncio.Event | None = None) -> None:
        """Run the service until `stopping` is set (by SIGTERM/SIGINT when not given), then
        drain and stop everything (see the module doc)."""
        stopping = stopping or _stop_on_signals()
        if self.check_files is not None:
            self.check_files(settings)
        engine = (
            create_engine(self._database(settings), application_name=f"leadflow-{self.name}")
            if self.database is not None
            else None
        )
        sessions = create_sessionmaker(engine) if engine is not None else None
        commands = CommandSender(settings.kafka, client_id=f"leadflow-{self.name}-commands")
        try:
            if sessions is not None and self.database is not None:
                await self._wait_for_schema(sessions, self.database)
            async with self.start(Resources(settings, sessions, commands)) as running:
                await self._run(settings, running, sessions, stopping)
        finally:
            await commands.close()
            if engine is not None:
                await engine.dispose()
            log.info("stopped")

    async def _wait_for_schema(
        self, sessions: async_sessionmaker[AsyncSession], database: Database
    ) -> None:
        """Start only on a schema this code can use (`shared.migrations.wait_for_schema`)."""
        state = await wait_for_schema(
            sessions,
            migrations_dir=database.migrations,
            schema=database.schema,
            wait_s=SCHEMA_WAIT_S,
        )
        if state is None:
            log.warning("schema %s: not checked, the database did not answer", database.schema)
        elif not state.usable:
            raise SchemaBehind(
                f"schema {database.schema} is at {state.current or 'no revision'}, this version"
                f" needs {state.head}: run `python -m services.{self.name} migrate` (the migrate"
                " Job) first"
            )
        elif state.newer_than_code:
            log.warning(
                "schema %s is at %s, newer than this version (%s): running on it (migrations"
                " only add)",
                database.schema,
                state.current,
                state.head,
            )

    async def _run(
        self,
        settings: S,
        running: Running,
        sessions: async_sessionmaker[AsyncSession] | None,
        stopping: asyncio.Event,
    ) -> None:
        runner = self._runner(settings, running, sessions)
        servers = self._servers(settings, running, runner)
        for server in servers:
            await server.start()
        log.info(
            "started; HTTP on %s", ", ".join(f"{server.host}:{server.port}" for server in servers)
        )
        companions = [
            asyncio.create_task(run_companion(c), name=c.name) for c in running.companions
        ]
        settle_garbage_collector()  # start-up is done: what exists now lives as long as we do
        try:
            if runner is not None:
                assert isinstance(settings, ConsumingServiceSettings)
                await _consume_until(
                    runner, stopping, drain_s=settings.consumer.shutdown_drain_timeout_s
                )
            else:
                await _first_of(stopping.wait(), servers[0].wait())
        finally:
            for task in companions:
                task.cancel()
            for task in companions:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for server in servers:
                await server.stop()

    def _runner(
        self,
        settings: S,
        running: Running,
        sessions: async_sessionmaker[AsyncSession] | None,
    ) -> ConsumerRunner | None:
        if running.handler is None:
            return None
        if sessions is None or self.database is None:
            raise TypeError(f"{self.name}: a consuming service needs a database")
        assert isinstance(settings, ConsumingServiceSettings)
        return ConsumerRunner(
            service=self.name,
            subscriptions=self.subscriptions,
            handler=running.handler,
            sessions=sessions,
            schema=self.database.schema,
            kafka=settings.kafka,
            consumer=settings.consumer,
        )

    def _servers(
        self, settings: S, running: Running, runner: ConsumerRunner | None
    ) -> list[HttpServer]:
        """A consuming service's health port, and its API port when it has routes of its own
        (each of which must name the scope it needs); then the apps it serves on addresses of
        their own (ingest's public app and health app; the console's pages)."""
        servers = self._consumer_servers(settings, running, runner) if runner is not None else []
        servers += [
            HttpServer(
                served.app,
                host=served.host,
                port=served.port,
                setting=served.setting,
                lifespan=served.lifespan,
                http="httptools",
                **served.server_options,
            )
            for served in running.apps
        ]
        if not servers:
            raise TypeError(f"{self.name}: Running needs a handler or an app")
        return servers

    def _consumer_servers(
        self, settings: S, running: Running, runner: ConsumerRunner
    ) -> list[HttpServer]:
        if not isinstance(settings, ConsumingServiceSettings):
            raise TypeError(f"{self.name}: a consuming service needs ConsumingServiceSettings")
        prefix = str(self.settings.model_config.get("env_prefix", ""))
        health = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        health.include_router(health_router(runner.readiness))
        servers = [
            HttpServer(
                health,
                host=settings.health_host,
                port=settings.health_port,
                setting=f"{prefix}HEALTH_PORT",
            )
        ]
        if running.routers:
            if open_routes := unauthenticated_routes(running.routers):
                raise TypeError(f"{self.name}: routes without a scope: {', '.join(open_routes)}")
            api = create_api(title=f"leadflow {self.name}", summary=self.summary)
            serve_clients(api, settings.api)
            for router in running.routers:
                api.include_router(router)
            servers.append(
                HttpServer(
                    api, host=settings.api_host, port=settings.api_port, setting=f"{prefix}API_PORT"
                )
            )
        return servers

    async def _operate(
        self, command: OperatorCommand[S], settings: S, args: argparse.Namespace
    ) -> int:
        engine = (
            create_engine(self._database(settings), application_name=f"leadflow-{self.name}-cli")
            if command.needs_database and self.database is not None
            else None
        )
        commands = CommandSender(settings.kafka, client_id=f"leadflow-{self.name}-cli")
        resources = Resources(
            settings, create_sessionmaker(engine) if engine is not None else None, commands
        )
        try:
            report = await command.run(resources, args)
        except OperatorError as exc:
            return _fail(str(exc), exit_code=exc.exit_code)
        except ConfigFileError as exc:
            return _fail(str(exc), exit_code=2)
        except (OSError, DBAPIError, InterfaceError) as exc:
            return _fail(_unreachable(exc), exit_code=3)
        finally:
            await commands.close()
            if engine is not None:
                await engine.dispose()
        _print_report(report, as_json=args.json)
        return report.exit_code

    def _commands(self) -> list[OperatorCommand[S]]:
        """The service's own operator commands, then its consumer runner's (a consuming service:
        `reset-offsets`, `replay-dead-letters`; `shared.consumer.operations`)."""
        if self.database is None or not self.subscriptions:
            return list(self.commands)
        return [
            *self.commands,
            *runner_commands(
                service=self.name, schema=self.database.schema, subscriptions=self.subscriptions
            ),
        ]

    def _database(self, settings: S) -> DatabaseSettings:
        if not isinstance(settings, ConsumingServiceSettings):
            raise TypeError(f"{self.name} has no database settings")
        return settings.database

    def _parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=f"python -m services.{self.name}", description=self.summary
        )
        commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
        commands.add_parser("run", help="serve until SIGTERM/SIGINT, then drain and exit 0")
        if self.database is not None:
            commands.add_parser(
                "migrate", help=f"bring the `{self.database.schema}` schema to the newest revision"
            )
        for command in self._commands():
            sub = commands.add_parser(command.name, help=command.help, description=command.help)
            command.arguments(sub)
            sub.add_argument("--json", action="store_true", help="print the result as JSON")
        return parser


async def _consume_until(
    runner: ConsumerRunner, stopping: asyncio.Event, *, drain_s: float
) -> None:
    """Run the consumer until it ends or `stopping` is set; then give its drain at most
    `drain_s` before cutting it (see `ConsumerRunner.abandon`)."""
    consuming = asyncio.create_task(runner.run(), name="consumer")
    await _first_of(stopping.wait(), asyncio.shield(consuming))
    if not consuming.done():
        runner.request_stop()
        done, _ = await asyncio.wait({consuming}, timeout=drain_s)
        if not done:
            log.error(
                "the drain took longer than %.0fs (shutdown_drain_timeout_s): cut; the batch "
                "in flight is not committed and will be redelivered",
                drain_s,
            )
            runner.abandon()
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consuming
            return
    consuming.result()  # a runner that gave up raises here: the process exits non-zero


async def _first_of(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of `awaitables` finishes (raising its error); cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT: the handlers only ask to stop."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


def _unreachable(exc: BaseException) -> str:
    """One line for a database or broker that does not answer an operator command."""
    reason = (str(exc).splitlines() or [""])[0]
    return (
        "cannot reach PostgreSQL (LEADFLOW_DATABASE_URL) or the broker "
        f"(LEADFLOW_KAFKA_BOOTSTRAP_SERVERS): {type(exc).__name__}: {reason} "
        "(is the local stack running? `make up`)"
    )


def _print_report(report: Report, *, as_json: bool) -> None:
    stream = sys.stdout if report.exit_code == 0 else sys.stderr
    if as_json:
        sys.stdout.write(
            orjson.dumps(report.data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"
        )
    elif report.text:
        print(report.text, file=stream)


def _fail(message: str, *, exit_code: int) -> int:
    for line in message.splitlines():
        print(f"error: {line}", file=sys.stderr)
    return exit_code
