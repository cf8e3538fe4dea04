"""`python -m services.enrich <command>` (`--help` lists them): the enrich service on the shell.

Start-up loads the accounts and suppressions files (when set) and the reference data into
memory before the first batch; three companions run beside the consumer: the re-enrichment
sweeper (with a provider), housekeeping and the reference reload (see `background`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.enrich import background, repository
from services.enrich.config import EnrichSettings
from services.enrich.firmographics import FileProvider, FirmographicsProvider
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.loading import BadFile, load_accounts, load_suppressions
from services.enrich.references import References
from services.enrich.repository import SCHEMA
from services.enrich.vendor import HttpVendorProvider
from shared.companions import Companion
from shared.contracts import EnrichCommand
from shared.db import unit_of_work
from shared.operator import OperatorCommand, OperatorError, Report, table
from shared.resources import Resources
from shared.service import Database, Running, Service
from shared.topics import ENRICH_COMMANDS, EVENTS_RAW

log = logging.getLogger("services.enrich")


def make_provider(settings: EnrichSettings) -> FirmographicsProvider | None:
    if settings.firmographics_provider == "file":
        return FileProvider(settings.companies_file)
    if settings.firmographics_provider == "http":
        return HttpVendorProvider(
            base_url=settings.vendor_url,
            api_key=settings.vendor_api_key.get_secret_value(),
            timeout_s=settings.vendor_timeout_s,
            retries=settings.vendor_retries,
            cache_ttl_s=settings.vendor_cache_ttl_s,
            breaker_failures=settings.vendor_breaker_failures,
            breaker_reset_s=settings.vendor_breaker_reset_s,
        )
    return None


@asynccontextmanager
async def start(resources: Resources[EnrichSettings]) -> AsyncIterator[Running]:
    """Accounts and suppressions are in memory before the first batch is handled."""
    settings, sessions, commands = resources.settings, resources.database(), resources.commands
    async with unit_of_work(sessions) as session:
        if settings.accounts_file:
            count = await load_accounts(session, settings.accounts_file)
            log.info("accounts: %d from %s", count, settings.accounts_file)
        if settings.suppressions_file:
            count = await load_suppressions(session, settings.suppressions_file)
            log.info("suppressions: %d from %s", count, settings.suppressions_file)
    references = References(fuzzy_threshold=settings.account_fuzzy_threshold)
    await background.refresh_references(sessions=sessions, references=references)
    provider = make_provider(settings)
    companions = [
        Companion.every(
            "reference reload",
            settings.reference_refresh_s,
            lambda: background.refresh_references(sessions=sessions, references=references),
        ),
        Companion.every(
            "housekeeping",
            settings.housekeeping_interval_s,
            lambda: background.housekeeping(sessions=sessions, settings=settings),
        ),
    ]
    if provider is not None:
        companions.append(
            Companion.every(
                "re-enrichment",
                settings.reenrich_interval_s,
                lambda: background.sweep_pending_enrichment(
                    sessions=sessions, provider=provider, commands=commands, settings=settings
                ),
            )
        )
    try:
        yield Running(
            handler=EnrichHandler(
                provider=provider,
                references=references,
                policy=EnrichPolicy(
                    anonymous_ids_per_week=settings.anonymous_ids_per_week,
                    max_anonymous_history=settings.max_anonymous_history,
                    lookup_budget_s=settings.lookup_budget_s,
                ),
            ),
            companions=companions,
        )
    finally:
        if isinstance(provider, HttpVendorProvider):
            await provider.close()


async def load_file(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    load = load_accounts if args.command == "load-accounts" else load_suppressions
    try:
        async with unit_of_work(resources.database()) as session:
            count = await load(session, args.file)
    except (BadFile, OSError) as exc:
        raise OperatorError(str(exc), exit_code=2) from None
    return Report(
        text=f"loaded {count} rows from {args.file}", data={"file": str(args.file), "rows": count}
    )


async def merges(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    async with unit_of_work(resources.database()) as session:
        found = await repository.get_merges_of(session, args.lead_id)
        emails = {
            lead.lead_id: lead.profile.email
            for lead in (
                await repository.get_leads(
                    session,
                    {m.merged_lead_id for m in found} | {m.surviving_lead_id for m in found},
                )
            ).values()
        }
    data: list[dict[str, Any]] = [
        {
            "merge_id": m.merge_id,
            "merged_lead_id": m.merged_lead_id,
            "merged_email": emails.get(m.merged_lead_id) or m.merged_lead_snapshot.get("email"),
            "surviving_lead_id": m.surviving_lead_id,
            "surviving_email": emails.get(m.surviving_lead_id),
            "reason": m.reason,
            "merged_at": m.merged_at,
            "unmerged_at": m.unmerged_at,
        }
        for m in found
    ]
    if not data:
        return Report(text=f"lead {args.lead_id} took part in no merge", data=[])
    rows = [
        [
            d["merge_id"],
            _lead(d["merged_lead_id"], d["merged_email"]),
            _lead(d["surviving_lead_id"], d["surviving_email"]),
            d["reason"],
            f"{d['merged_at']:%Y-%m-%d %H:%M}" if d["merged_at"] else None,
            f"unmerged {d['unmerged_at']:%Y-%m-%d %H:%M}" if d["unmerged_at"] else "active",
        ]
        for d in data
    ]
    return Report(
        text=table(["merge", "merged lead", "into", "reason", "merged at", "state"], rows),
        data=data,
    )


async def unmerge(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    sessions = resources.database()
    async with unit_of_work(sessions) as session:
        merge = await repository.get_merge(session, args.merge_id, lock=False)
    if merge is None:
        raise OperatorError(f"no merge {args.merge_id}", exit_code=2)
    data = {"merge_id": args.merge_id, "merged_lead_id": merge.merged_lead_id}
    if merge.unmerged_at is not None:
        return Report(
            text=f"merge {args.merge_id} was already reversed at {merge.unmerged_at}",
            data={**data, "unmerged_at": merge.unmerged_at},
        )
    await resources.commands.send(
        ENRICH_COMMANDS,
        [
            EnrichCommand(
                command_id=str(uuid.uuid4()),
                kind="unmerge",
                merge_id=args.merge_id,
                requested_by=args.by,
                at=datetime.now(UTC),
            )
        ],
    )
    deadline = asyncio.get_running_loop().time() + args.timeout_s
    while asyncio.get_running_loop().time() < deadline:
        async with unit_of_work(sessions) as session:
            merge = await repository.get_merge(session, args.merge_id, lock=False)
        if merge is not None and merge.unmerged_at is not None:
            return Report(
                text=f"unmerged {args.merge_id}: lead {merge.merged_lead_id} restored "
                f"from {merge.surviving_lead_id}",
                data={**data, "unmerged_at": merge.unmerged_at},
            )
        await asyncio.sleep(0.5)
    raise OperatorError(
        f"requested unmerge of {args.merge_id}; enrich has not applied it yet "
        "(is the service running?)"
    )


def _lead(lead_id: str, email: str | None) -> str:
    return f"{lead_id} <{email}>" if email else lead_id


def _unmerge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("merge_id")
    parser.add_argument("--by", default="operator", help="who asks (kept with the merge)")
    parser.add_argument("--timeout-s", type=float, default=60, help="how long to wait for it")


SERVICE = Service(
    name="enrich",
    summary="Resolves identities, normalises traits, appends firmographics and matches accounts.",
    settings=EnrichSettings,
    start=start,
    database=Database(schema=SCHEMA, migrations=Path(__file__).parent / "migrations"),
    subscriptions=[EVENTS_RAW, ENRICH_COMMANDS],
    commands=[
        OperatorCommand(
            name="load-accounts",
            help="upsert accounts from a CSV file (account_id,name,domain,type,...)",
            arguments=lambda parser: parser.add_argument("file", type=Path),
            run=load_file,
        ),
        OperatorCommand(
            name="load-suppressions",
            help="upsert the suppression list from a CSV file (value,reason)",
            arguments=lambda parser: parser.add_argument("file", type=Path),
            run=load_file,
        ),
        OperatorCommand(
            name="merges",
            help="list the merges a lead took part in (to find a merge id)",
            arguments=lambda parser: parser.add_argument("lead_id"),
            run=merges,
        ),
        OperatorCommand(
            name="unmerge",
            help="reverse a merge: the running service applies it (exactly once) and emits "
            "`unmerged`; this waits until it is applied",
            arguments=_unmerge_arguments,
            run=unmerge,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
