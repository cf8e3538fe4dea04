"""Erasure requests, the edges: taking a request (API and CLI), carrying it out (the consumer),
its reports, and the do-not-track check of every batch of events.

1. **Taking** (`take_request`): the identifier and reason are checked (`erasures`), the request
   is stored (the identifier in clear, until it is resolved) and committed, then an
   `enrich.commands` `erase` naming only the request id is sent. The request is durable once
   stored: if the command cannot be sent (broker away), the resend companion
   (`resend_unresolved`) sends it again later, so the caller gets its request id either way.
2. **Carrying out** (`carry_out`, in the consumer's batch transaction, so exactly once): the
   do-not-track gate closed (`erasure_store`), the person resolved through the identity graph,
   the keyed hash of every identifier they had (and of the one asked for, found or not: like
   HubSpot, an unknown address is still blocked, and the status says nothing was found) put on
   the do-not-track list, everything enrich keeps about their leads deleted, the identifier's
   clear text forgotten, and one `privacy.erasures` notice naming the leads emitted for the
   other services (none when nothing was found).
3. **Reports** (`record_reports`): each service's `privacy.reports` marks its part complete.
4. **Do not track** (`blocked_events`): a call naming an identifier on the list is dropped
   before it is resolved, counted on `leadflow_enrich_do_not_track_dropped_total`, never
   stored. A userId that is an email address is checked as that address too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich import erasure_store
from services.enrich.erasure_store import Person
from services.enrich.erasures import checked_reason, identifier_of, status_of
from services.enrich.identity import Identity, IdentityKind, email_of
from services.enrich.metrics import DO_NOT_TRACK_DROPPED, ERASURES
from shared.commands import CommandSender
from shared.consumer import Output
from shared.contracts import EnrichCommand, ErasureNotice, ErasureReport
from shared.db import unit_of_work
from shared.privacy import identifier_hash
from shared.topics import ENRICH_COMMANDS, PRIVACY_ERASURES

log = logging.getLogger(__name__)


def hash_of(key: bytes, identity: Identity) -> bytes:
    return identifier_hash(key, kind=identity.kind.value, value=identity.value)


def hashes_to_check(key: bytes, identities: Iterable[Identity]) -> set[bytes]:
    """The keyed hashes a call's identities are checked by: each identity's, and for a userId
    that is an email address, that address's (lead lists used to send the email as userId)."""
    hashes = set()
    for identity in identities:
        hashes.add(hash_of(key, identity))
        if identity.kind is IdentityKind.USER_ID and (email := email_of(identity.value)):
            hashes.add(hash_of(key, Identity(IdentityKind.EMAIL, email)))
    return hashes


async def take_request(
    *,
    sessions: async_sessionmaker[AsyncSession],
    commands: CommandSender,
    key: bytes,
    kind: str,
    value: str,
    reason: str,
    requested_by: str,
    at: datetime,
) -> str:
    """Record an erasure request and send its command; returns the request id. Raises
    `erasures.BadRequest` for a malformed identifier or reason (nothing stored)."""
    identity = identifier_of(kind, value)
    reason = checked_reason(reason, identity)
    request_id = str(uuid.uuid4())
    async with unit_of_work(sessions) as session:
        await erasure_store.record_request(
            session,
            request_id=request_id,
            identity=identity,
            identifier_hash=hash_of(key, identity),
            reason=reason,
            requested_by=requested_by,
        )
    try:
        await commands.send(ENRICH_COMMANDS, [erase_command(request_id, by=requested_by, at=at)])
    except Exception as exc:  # stored: the resend companion sends it later
        log.warning("erasure %s stored; its command will be sent again: %r", request_id, exc)
    return request_id


def erase_command(request_id: str, *, by: str | None, at: datetime) -> EnrichCommand:
    return EnrichCommand(
        command_id=str(uuid.uuid4()),
        kind="erase",
        request_id=request_id,
        requested_by=by,
        at=at,
    )


async def resend_unresolved(
    *,
    sessions: async_sessionmaker[AsyncSession],
    commands: CommandSender,
    older_than_s: float,
    at: datetime,
) -> int:
    """Send the command of every request still unresolved after `older_than_s` again (a
    command lost to a broker outage, or not yet consumed: applying it twice does nothing)."""
    async with unit_of_work(sessions) as session:
        waiting = await erasure_store.unresolved_requests(session, older_than_s=older_than_s)
    if waiting:
        await commands.send(
            ENRICH_COMMANDS, [erase_command(request_id, by=None, at=at) for request_id in waiting]
        )
        log.info("erasure: sent %d unresolved requests again", len(waiting))
    return len(waiting)


async def carry_out(
    session: AsyncSession,
    *,
    request_id: str,
    key: bytes,
    reporters: Sequence[str],
    at: datetime,
) -> tuple[Person, list[Output]]:
    """Carry out the request (see the module doc), in the caller's transaction. A request
    already carried out (a redelivered command) or unknown changes nothing. Returns the person
    erased (their lead ids, for the caller's caches) and the outputs."""
    await erasure_store.close_gate(session)
    request = await erasure_store.claim_request(session, request_id)
    if request is None:
        return Person(), []
    person = await erasure_store.person_of(session, request.identity)
    hashes = {request.identifier_hash: request.identity.kind.value}
    for identity in person.identities:
        hashes[hash_of(key, identity)] = identity.kind.value
    await erasure_store.add_to_do_not_track(session, request_id=request_id, hashes=hashes)
    erased = await erasure_store.erase_leads(session, person.lead_ids) if person.lead_ids else {}
    await erasure_store.mark_resolved(
        session, request_id=request_id, person=person, erased=erased, reporters=reporters
    )
    ERASURES.labels(found=str(bool(person.lead_ids)).lower()).inc()
    log.info(
        "erasure %s: %d leads, %d identifiers erased and blocked",
        request_id,
        len(person.lead_ids),
        len(person.identities),
    )
    if not person.lead_ids:
        return person, []
    notice = ErasureNotice(
        request_id=request_id,
        lead_ids=list(person.lead_ids),
        requested_at=request.requested_at,
        erased_at=at,
    )
    return person, [Output(PRIVACY_ERASURES, key=request_id, value=notice)]


async def record_reports(session: AsyncSession, reports: Sequence[ErasureReport]) -> None:
    for report in reports:
        if not await erasure_store.record_report(session, report):
            log.warning(
                "erasure report of %s for unknown request %s", report.service, report.request_id
            )


async def blocked_events(
    session: AsyncSession, *, key: bytes, identities: Sequence[Iterable[Identity]]
) -> set[int]:
    """The positions in `identities` (one entry per call: its identities) of the calls naming
    someone on the do-not-track list; counted as dropped. One query per batch."""
    per_call = [hashes_to_check(key, call) for call in identities]
    listed = await erasure_store.on_do_not_track(session, set().union(*per_call))
    if not listed:
        return set()
    blocked = {index for index, hashes in enumerate(per_call) if hashes & listed}
    DO_NOT_TRACK_DROPPED.inc(len(blocked))
    return blocked


def described(record: erasure_store.RequestRecord) -> dict[str, Any]:
    """A request as the API and the CLI show it: the audit (no personal data), its status and
    each service's part."""
    return {
        "request_id": record.request_id,
        "status": status_of(resolved=record.resolved_at is not None, parts=record.service_parts),
        "nothing_found": record.resolved_at is not None and record.leads_found == 0,
        "identifier_kind": record.identifier_kind,
        "identifier_hash": record.identifier_hash.hex(),
        "reason": record.reason,
        "requested_by": record.requested_by,
        "requested_at": record.requested_at.isoformat(),
        "resolved_at": record.resolved_at.isoformat() if record.resolved_at else None,
        "leads_found": record.leads_found,
        "identifiers_found": record.identifiers_found,
        "services": {
            part["service"]: {
                "status": part["status"],
                "erased": part["erased"],
                "anonymised": part["anonymised"],
                "reported_at": part["reported_at"],
            }
            for part in record.parts
        },
        "unsuppressed_at": record.unsuppressed_at.isoformat() if record.unsuppressed_at else None,
        "unsuppressed_by": record.unsuppressed_by,
    }
