"""`python -m services.enrich <command>`.

run                      consume `events.raw` until SIGTERM/SIGINT, then drain and exit 0
migrate                  bring the `enrich` schema to the newest revision
load-accounts FILE       upsert accounts from a CSV file (account_id,name,domain,type,...)
load-suppressions FILE   upsert the suppression list from a CSV file (value,reason)
merges LEAD_ID           list the merges a lead took part in (to find a merge id)
unmerge MERGE_ID [--by NAME]
                         reverse a merge: the running service applies it (exactly once)
                         and emits `unmerged`; this waits until it is applied
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from services.enrich import repository
from services.enrich.config import EnrichSettings
from services.enrich.loading import BadFile, load_accounts, load_suppressions
from services.enrich.repository import SCHEMA
from services.enrich.service import serve
from shared.codec import encode
from shared.contracts import EnrichCommand
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.kafka import create_producer
from shared.migrations import upgrade_to_head
from shared.telemetry import configure_logging
from shared.topics import ENRICH_COMMANDS

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("services.enrich")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.enrich")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run")
    commands.add_parser("migrate")
    for name in ("load-accounts", "load-suppressions"):
        commands.add_parser(name).add_argument("file", type=Path)
    commands.add_parser("merges").add_argument("lead_id")
    unmerge = commands.add_parser("unmerge")
    unmerge.add_argument("merge_id")
    unmerge.add_argument("--by", default="operator", help="who asks (kept with the merge)")
    unmerge.add_argument("--timeout-s", type=float, default=60)
    args = parser.parse_args(argv)
    settings = EnrichSettings()
    configure_logging(settings.log_level, service="enrich")
    command = args.command or "run"
    if command == "run":
        uvloop.run(serve(settings))  # the event loop in C, as every consumer (shared.service)
        return 0
    if command == "migrate":
        upgrade_to_head(
            migrations_dir=MIGRATIONS,
            schema=SCHEMA,
            database_url=settings.database.url.get_secret_value(),
        )
        log.info("schema %s is at the newest revision", SCHEMA)
        return 0
    return asyncio.run(_operator_command(settings, args))


async def _operator_command(settings: EnrichSettings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database, application_name="leadflow-enrich-cli")
    sessions = create_sessionmaker(engine)
    try:
        if args.command in ("load-accounts", "load-suppressions"):
            load = load_accounts if args.command == "load-accounts" else load_suppressions
            try:
                async with unit_of_work(sessions) as session:
                    count = await load(session, args.file)
            except (BadFile, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"loaded {count} rows from {args.file}")
            return 0
        if args.command == "merges":
            async with unit_of_work(sessions) as session:
                merges = await repository.get_merges_of(session, args.lead_id)
            for m in merges:
                state = f"unmerged {m.unmerged_at:%Y-%m-%d %H:%M}" if m.unmerged_at else "active"
                print(
                    f"{m.merge_id}  {m.merged_lead_id} -> {m.surviving_lead_id}  "
                    f"{m.reason}  {state}"
                )
            return 0
        return await _unmerge(settings, sessions, args)
    finally:
        await engine.dispose()


async def _unmerge(settings: EnrichSettings, sessions: object, args: argparse.Namespace) -> int:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    assert isinstance(sessions, async_sessionmaker)
    maker: async_sessionmaker[AsyncSession] = sessions
    async with unit_of_work(maker) as session:
        merge = await repository.get_merge(session, args.merge_id, lock=False)
    if merge is None:
        print(f"error: no merge {args.merge_id}", file=sys.stderr)
        return 2
    if merge.unmerged_at is not None:
        print(f"merge {args.merge_id} was already reversed at {merge.unmerged_at}")
        return 0
    command = EnrichCommand(
        command_id=str(uuid.uuid4()),
        kind="unmerge",
        merge_id=args.merge_id,
        requested_by=args.by,
        at=datetime.now(UTC),
    )
    producer = create_producer(settings.kafka, client_id="leadflow-enrich-cli")
    await producer.start()
    try:
        await producer.send_and_wait(
            ENRICH_COMMANDS.full_name(settings.kafka.topic_prefix),
            value=encode(command),
            key=args.merge_id.encode(),
        )
    finally:
        await producer.stop()
    deadline = asyncio.get_running_loop().time() + args.timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with unit_of_work(maker) as session:
            merge = await repository.get_merge(session, args.merge_id, lock=False)
        if merge is not None and merge.unmerged_at is not None:
            print(
                f"unmerged {args.merge_id}: lead {merge.merged_lead_id} restored "
                f"from {merge.surviving_lead_id}"
            )
            return 0
        await asyncio.sleep(0.5)
    print(
        f"requested unmerge of {args.merge_id}; enrich has not applied it yet "
        "(is the service running?)",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
