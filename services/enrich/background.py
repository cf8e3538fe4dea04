"""enrich's periodic work next to the consumer: re-enrichment, housekeeping, reference reload.

- Re-enrichment sweeper: domains whose lookup failed wait in `pending_enrichment`. Every
  `reenrich_interval_s` a process leases the due ones (SKIP LOCKED: several processes share the
  work), asks the provider again and, on an answer, produces an `enrich.commands`
  `firmographics_found`; the consumer handler then completes the waiting leads and emits their
  `profile_updated` with exactly-once effects. A failure reschedules with exponential backoff.
  The command is produced before the row is rescheduled past the lease, so a crash in between
  only repeats a lookup (and applying the command twice changes nothing).
- Housekeeping: forgets message ids older than the dedupe retention, old anonymous history and
  merges older than `merge_retention_days` (with the pictures they keep), each by an index on
  its time, in bounded deletes.
- References: reloads accounts and suppressions when their tables change.

Each is a companion (`shared.companions`) of the running service.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich import repository
from services.enrich.config import EnrichSettings
from services.enrich.firmographics import FirmographicsProvider, ProviderUnavailable
from services.enrich.references import References
from shared.commands import CommandSender
from shared.contracts import EnrichCommand
from shared.db import unit_of_work
from shared.housekeeping import in_rounds
from shared.topics import ENRICH_COMMANDS

log = logging.getLogger(__name__)

LEASE_S = 120.0


async def sweep_pending_enrichment(
    *,
    sessions: async_sessionmaker[AsyncSession],
    provider: FirmographicsProvider,
    commands: CommandSender,
    settings: EnrichSettings,
) -> int:
    """One round of re-enrichment; returns how many domains got an answer."""
    async with unit_of_work(sessions) as session:
        domains = await repository.claim_due_domains(
            session, limit=settings.reenrich_batch, lease_s=LEASE_S
        )
    if not domains:
        return 0
    answered = 0
    results = await asyncio.gather(
        *(provider.lookup(domain) for domain in domains), return_exceptions=True
    )
    for domain, result in zip(domains, results, strict=True):
        if isinstance(result, BaseException):
            reason = str(result) if isinstance(result, ProviderUnavailable) else repr(result)
            async with unit_of_work(sessions) as session:
                await repository.reschedule_enrichment(
                    session,
                    domain=domain,
                    error=reason,
                    initial_s=settings.reenrich_backoff_initial_s,
                    max_s=settings.reenrich_backoff_max_s,
                )
            continue
        command = EnrichCommand(
            command_id=str(uuid.uuid4()),
            kind="firmographics_found",
            domain=domain,
            firmographics=result,
            at=datetime.now(UTC),
        )
        await commands.send(ENRICH_COMMANDS, [command])
        answered += 1
    log.info("re-enrichment: %d of %d domains answered", answered, len(domains))
    return answered


async def housekeeping(
    *, sessions: async_sessionmaker[AsyncSession], settings: EnrichSettings
) -> None:
    """One round of retention (`shared.housekeeping`): message ids, anonymous history, merges."""
    forgotten = await in_rounds(
        sessions,
        lambda session: repository.forget_seen_messages(
            session, older_than_hours=settings.seen_messages_retention_hours
        ),
        batch=repository.FORGET_BATCH,
    )
    history = await in_rounds(
        sessions,
        lambda session: repository.forget_old_anonymous_history(
            session, older_than_days=settings.anonymous_history_retention_days
        ),
        batch=repository.FORGET_BATCH,
    )
    merges = await in_rounds(
        sessions,
        lambda session: repository.forget_old_merges(
            session, older_than_days=settings.merge_retention_days
        ),
        batch=repository.FORGET_BATCH,
    )
    if forgotten or history or merges:
        log.info(
            "housekeeping: forgot %d message ids, %d anonymous events, %d merges",
            forgotten,
            history,
            merges,
        )


async def refresh_references(
    *, sessions: async_sessionmaker[AsyncSession], references: References
) -> None:
    async with unit_of_work(sessions) as session:
        if await references.refresh(session):
            log.info(
                "loaded %d accounts and %d suppressions",
                len(references.accounts),
                len(references.suppressions.entries),
            )
