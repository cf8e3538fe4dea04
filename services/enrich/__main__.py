"""`python -m services.enrich <command>` (`--help` lists them): the enrich service on the shell.

Start-up loads the accounts and suppressions files (when set) and the reference data into
memory before the first batch; four companions run beside the consumer: the re-enrichment
sweeper (with a provider), housekeeping, the reference reload (see `background`) and the resend
of erasure requests not yet resolved (`erasing`). The API port serves erasures (`http`).
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

from services.enrich import background, erasing, erasure_store, repository
from services.enrich.config import EnrichSettings
from services.enrich.erasures import BadRequest, identifier_of
from services.enrich.firmographics import FileProvider, FirmographicsProvider
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.http import enrich_api
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
from shared.topics import ENRICH_COMMANDS, EVENTS_RAW, PRIVACY_REPORTS

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
    key = settings.privacy_key.get_secret_value().encode()
    companions = [
        Companion.every(
            "erasure resend",
            settings.erasure_resend_interval_s,
            lambda: erasing.resend_unresolved(
                sessions=sessions,
                commands=commands,
                older_than_s=settings.erasure_resend_after_s,
                at=datetime.now(UTC),
            ),
        ),
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
                privacy_key=key,
                erasure_reporters=settings.erasure_reporters,
            ),
            companions=companions,
            routers=enrich_api(sessions, commands=commands, key=key),
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
        raise OperatorError(
            f"no merge {args.merge_id} (merges are forgotten "
            f"{resources.settings.merge_retention_days:g} days after they were made:"
            " LEADFLOW_ENRICH_MERGE_RETENTION_DAYS)",
            exit_code=2,
        )
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


async def erase(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    kind, value = _named(args)
    try:
        request_id = await erasing.take_request(
            sessions=resources.database(),
            commands=resources.commands,
            key=resources.settings.privacy_key.get_secret_value().encode(),
            kind=kind,
            value=value,
            reason=args.reason,
            requested_by=args.by,
            at=datetime.now(UTC),
        )
    except BadRequest as exc:
        raise OperatorError(str(exc), exit_code=2) from None
    if args.wait_s > 0:
        deadline = asyncio.get_running_loop().time() + args.wait_s
        while asyncio.get_running_loop().time() < deadline:
            described = await _described(resources, request_id)
            if described["status"] == "complete":
                break
            await asyncio.sleep(0.5)
    return _status_report(await _described(resources, request_id))


async def erasure_status(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    return _status_report(await _described(resources, args.request_id))


async def erasures(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    async with unit_of_work(resources.database()) as session:
        records = await erasure_store.newest_requests(session, limit=args.limit)
    data = [erasing.described(record) for record in records]
    rows = [
        [
            d["request_id"],
            d["status"] + (" (nothing found)" if d["nothing_found"] else ""),
            d["identifier_kind"],
            d["requested_by"],
            d["requested_at"][:19],
            d["reason"],
        ]
        for d in data
    ]
    return Report(
        text=table(["request", "status", "by", "requested by", "at", "reason"], rows)
        if rows
        else "no erasure requests",
        data=data,
    )


async def unsuppress(resources: Resources[EnrichSettings], args: argparse.Namespace) -> Report:
    kind, value = _named(args)
    try:
        identity = identifier_of(kind, value)
    except BadRequest as exc:
        raise OperatorError(str(exc), exit_code=2) from None
    key = resources.settings.privacy_key.get_secret_value().encode()
    async with unit_of_work(resources.database()) as session:
        lifted = await erasure_store.lift_do_not_track(
            session, identifier_hash=erasing.hash_of(key, identity), by=args.by
        )
    if not lifted:
        raise OperatorError(f"that {kind} is not on the do-not-track list", exit_code=1)
    return Report(
        text=f"lifted the do-not-track entries of {len(lifted)} erasure request(s): "
        + ", ".join(lifted),
        data={"lifted_requests": lifted},
    )


async def _described(resources: Resources[EnrichSettings], request_id: str) -> dict[str, Any]:
    async with unit_of_work(resources.database()) as session:
        record = await erasure_store.get_request(session, request_id)
    if record is None:
        raise OperatorError(f"no erasure request {request_id}", exit_code=2)
    return erasing.described(record)


def _status_report(described: dict[str, Any]) -> Report:
    parts = [
        [service, part["status"], _counts(part["erased"]), _counts(part["anonymised"])]
        for service, part in described["services"].items()
    ]
    found = (
        "nothing found (the identifier is on the do-not-track list all the same)"
        if described["nothing_found"]
        else f"{described['leads_found']} lead(s), {described['identifiers_found']} identifier(s)"
        if described["resolved_at"]
        else "not resolved yet"
    )
    text = f"erasure {described['request_id']}: {described['status']}; {found}"
    if parts:
        text += "\n" + table(["service", "part", "erased", "anonymised"], parts)
    return Report(text=text, data=described)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {count}" for table, count in counts.items()) or "-"


def _named(args: argparse.Namespace) -> tuple[str, str]:
    given = [
        (kind, value)
        for kind, value in (
            ("email", args.email),
            ("user_id", args.user_id),
            ("anonymous_id", args.anonymous_id),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise OperatorError(
            "name the person by exactly one of --email, --user-id, --anonymous-id", exit_code=2
        )
    return given[0]


def _identifier_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email")
    parser.add_argument("--user-id")
    parser.add_argument("--anonymous-id")
    parser.add_argument("--by", required=True, help="who asks (kept in the audit log)")


def _erase_arguments(parser: argparse.ArgumentParser) -> None:
    _identifier_arguments(parser)
    parser.add_argument(
        "--reason", required=True, help="why (kept in the audit log: no personal data)"
    )
    parser.add_argument(
        "--wait-s", type=float, default=0, help="wait this long for every service's part"
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
    subscriptions=[EVENTS_RAW, ENRICH_COMMANDS, PRIVACY_REPORTS],
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
        OperatorCommand(
            name="erase",
            help="erase a person everywhere (by --email, --user-id or --anonymous-id) and stop "
            "collecting their data; prints the request and its status",
            arguments=_erase_arguments,
            run=erase,
        ),
        OperatorCommand(
            name="erasure-status",
            help="an erasure request's status, per service",
            arguments=lambda parser: parser.add_argument("request_id"),
            run=erasure_status,
        ),
        OperatorCommand(
            name="erasures",
            help="the erasure audit log: the newest requests (no personal data)",
            arguments=lambda parser: parser.add_argument("--limit", type=int, default=50),
            run=erasures,
        ),
        OperatorCommand(
            name="unsuppress",
            help="collect a person's data again: lift the do-not-track entries of their erasures",
            arguments=_identifier_arguments,
            run=unsuppress,
        ),
    ],
)

if __name__ == "__main__":
    sys.exit(SERVICE.main())
