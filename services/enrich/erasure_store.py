"""enrich's erasure tables (migration 0005) and the erasure of a person's identity graph.

SQL follows `shared.db`'s convention (literal statements, `$n` parameters).

The do-not-track **gate**: every batch of events takes it shared in its first statement
(`repository.claim_new_message_ids`) and checks the do-not-track list in a later one; carrying
out an erasure takes it exclusively (`close_gate`) before it looks at the identity graph. So a
batch that was running when the erasure began has committed before the erasure reads the graph
(and what it linked is erased too), and a batch that starts after waits, then sees the new
do-not-track entries. Erasures are rare and take milliseconds: the wait is not felt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich.erasures import ServicePart
from services.enrich.identity import Identity, IdentityKind
from services.enrich.repository import DO_NOT_TRACK_GATE
from shared.contracts import ErasureReport
from shared.db import execute, fetch, fetchrow, json_document


@dataclass(frozen=True)
class RequestToCarryOut:
    request_id: str
    identity: Identity
    identifier_hash: bytes
    requested_at: datetime


@dataclass(frozen=True)
class Person:
    """What the identity graph knows of one person: their leads (the lead holding the
    identifier and every lead merged into it, transitively) and every identity of those."""

    lead_ids: tuple[str, ...] = ()
    identities: tuple[Identity, ...] = ()


@dataclass(frozen=True)
class RequestRecord:
    """A request as the audit keeps it (no personal data)."""

    request_id: str
    identifier_kind: str
    identifier_hash: bytes
    reason: str
    requested_by: str
    requested_at: datetime
    resolved_at: datetime | None
    leads_found: int | None
    identifiers_found: int | None
    unsuppressed_at: datetime | None
    unsuppressed_by: str | None
    parts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def service_parts(self) -> list[ServicePart]:
        return [ServicePart(part["service"], part["status"]) for part in self.parts]


# -- requests ------------------------------------------------------------------------------------


async def record_request(
    session: AsyncSession,
    *,
    request_id: str,
    identity: Identity,
    identifier_hash: bytes,
    reason: str,
    requested_by: str,
) -> None:
    """Store a new request with its identifier in clear (until it is resolved)."""
    await execute(
        session,
        """
        INSERT INTO enrich.erasure_requests
            (request_id, identifier_kind, identifier_hash, identifier, reason, requested_by)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        request_id,
        identity.kind.value,
        identifier_hash,
        identity.value,
        reason,
        requested_by,
    )


async def unresolved_requests(session: AsyncSession, *, older_than_s: float) -> list[str]:
    """Requests recorded longer than `older_than_s` ago and still not resolved (their command
    was lost, or enrich was away): oldest first."""
    rows = await fetch(
        session,
        "SELECT request_id FROM enrich.erasure_requests"
        " WHERE resolved_at IS NULL AND requested_at < now() - make_interval(secs => $1)"
        " ORDER BY requested_at LIMIT 1000",
        older_than_s,
    )
    return [row["request_id"] for row in rows]


async def close_gate(session: AsyncSession) -> None:
    """Hold the do-not-track gate exclusively until the transaction ends (see the module doc)."""
    await execute(session, "SELECT pg_advisory_xact_lock($1, $2)", *DO_NOT_TRACK_GATE)


async def claim_request(session: AsyncSession, request_id: str) -> RequestToCarryOut | None:
    """The request, locked, if it is still to be carried out; None if it is done or unknown."""
    row = await fetchrow(
        session,
        "SELECT request_id, identifier_kind, identifier, identifier_hash, requested_at"
        " FROM enrich.erasure_requests WHERE request_id = $1 AND resolved_at IS NULL FOR UPDATE",
        request_id,
    )
    if row is None:
        return None
    return RequestToCarryOut(
        request_id=row["request_id"],
        identity=Identity(IdentityKind(row["identifier_kind"]), row["identifier"]),
        identifier_hash=bytes(row["identifier_hash"]),
        requested_at=row["requested_at"],
    )


async def mark_resolved(
    session: AsyncSession,
    *,
    request_id: str,
    person: Person,
    erased: Mapping[str, int],
    reporters: Sequence[str],
) -> None:
    """Forget the identifier's clear text, record what was found, enrich's part complete and
    each reporter's part pending (none when nothing was found: nobody else has anything)."""
    await execute(
        session,
        """
        WITH resolved AS (
            UPDATE enrich.erasure_requests
               SET identifier = NULL, resolved_at = now(), leads_found = $2,
                   identifiers_found = $3
             WHERE request_id = $1
        )
        INSERT INTO enrich.erasure_services (request_id, service, status, erased, reported_at)
        SELECT $1, 'enrich', 'complete', $4::jsonb, now()
        UNION ALL
        SELECT $1, reporter, 'pending', '{}'::jsonb, NULL FROM unnest($5::text[]) AS reporter
        ON CONFLICT (request_id, service) DO NOTHING
        """,
        request_id,
        len(person.lead_ids),
        len(person.identities),
        json_document(dict(erased)),
        list(reporters) if person.lead_ids else [],
    )


async def record_report(session: AsyncSession, report: ErasureReport) -> bool:
    """A service's part complete, with its counts; False for a request enrich does not know."""
    updated = await execute(
        session,
        """
        INSERT INTO enrich.erasure_services
            (request_id, service, status, erased, anonymised, reported_at)
        SELECT request_id, $2, 'complete', $3::jsonb, $4::jsonb, $5
          FROM enrich.erasure_requests WHERE request_id = $1
        ON CONFLICT (request_id, service) DO UPDATE SET status = 'complete',
            erased = EXCLUDED.erased, anonymised = EXCLUDED.anonymised,
            reported_at = EXCLUDED.reported_at
        """,
        report.request_id,
        report.service,
        json_document(report.erased),
        json_document(report.anonymised),
        report.reported_at,
    )
    return updated > 0


_REQUEST = """
SELECT request.request_id, request.identifier_kind, request.identifier_hash, request.reason,
       request.requested_by, request.requested_at, request.resolved_at, request.leads_found,
       request.identifiers_found, request.unsuppressed_at, request.unsuppressed_by,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'service', part.service, 'status', part.status, 'erased', part.erased,
                    'anonymised', part.anonymised, 'reported_at', part.reported_at)
                    ORDER BY part.service)
                 FROM enrich.erasure_services AS part
                WHERE part.request_id = request.request_id), '[]'::jsonb) AS parts
  FROM enrich.erasure_requests AS request
"""


def _record(row: Mapping[str, Any]) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"],
        identifier_kind=row["identifier_kind"],
        identifier_hash=bytes(row["identifier_hash"]),
        reason=row["reason"],
        requested_by=row["requested_by"],
        requested_at=row["requested_at"],
        resolved_at=row["resolved_at"],
        leads_found=row["leads_found"],
        identifiers_found=row["identifiers_found"],
        unsuppressed_at=row["unsuppressed_at"],
        unsuppressed_by=row["unsuppressed_by"],
        parts=row["parts"],
    )


async def get_request(session: AsyncSession, request_id: str) -> RequestRecord | None:
    row = await fetchrow(session, _REQUEST + " WHERE request.request_id = $1", request_id)
    return _record(row) if row else None


async def newest_requests(session: AsyncSession, *, limit: int) -> list[RequestRecord]:
    rows = await fetch(session, _REQUEST + " ORDER BY request.requested_at DESC LIMIT $1", limit)
    return [_record(row) for row in rows]


# -- the identity graph --------------------------------------------------------------------------


async def person_of(session: AsyncSession, identity: Identity) -> Person:
    """The person `identity` names (see `Person`), their leads locked; empty if unknown."""
    rows = await fetch(
        session,
        """
        WITH RECURSIVE person (lead_id) AS (
            SELECT lead_id FROM enrich.identities WHERE kind = $1 AND value = $2
            UNION
            SELECT merge.merged_lead_id FROM enrich.merges AS merge
              JOIN person ON merge.surviving_lead_id = person.lead_id
             WHERE merge.unmerged_at IS NULL
        )
        SELECT lead.lead_id FROM enrich.leads AS lead
         WHERE lead.lead_id IN (SELECT lead_id FROM person)
         ORDER BY lead.lead_id
           FOR UPDATE
        """,
        identity.kind.value,
        identity.value,
    )
    lead_ids = tuple(row["lead_id"] for row in rows)
    if not lead_ids:
        return Person()
    links = await fetch(
        session,
        "SELECT kind, value FROM enrich.identities WHERE lead_id = ANY($1::text[])",
        list(lead_ids),
    )
    return Person(
        lead_ids=lead_ids,
        identities=tuple(sorted(Identity(IdentityKind(r["kind"]), r["value"]) for r in links)),
    )


async def erase_leads(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, int]:
    """Delete everything enrich keeps about the leads: their identities, kept anonymous history,
    merges (either side) and the leads themselves. Returns rows deleted per table."""
    row = await fetchrow(
        session,
        """
        WITH identities AS (
            DELETE FROM enrich.identities WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), history AS (
            DELETE FROM enrich.anonymous_events WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), merges AS (
            DELETE FROM enrich.merges
             WHERE surviving_lead_id = ANY($1::text[]) OR merged_lead_id = ANY($1::text[])
            RETURNING 1
        ), leads AS (
            DELETE FROM enrich.leads WHERE lead_id = ANY($1::text[]) RETURNING 1
        )
        SELECT (SELECT count(*) FROM leads) AS leads,
               (SELECT count(*) FROM identities) AS identities,
               (SELECT count(*) FROM history) AS anonymous_events,
               (SELECT count(*) FROM merges) AS merges
        """,
        list(lead_ids),
    )
    assert row is not None
    return {
        table: int(row[table]) for table in ("leads", "identities", "anonymous_events", "merges")
    }


# -- do not track --------------------------------------------------------------------------------


async def add_to_do_not_track(
    session: AsyncSession, *, request_id: str, hashes: Mapping[bytes, str]
) -> None:
    """Put the keyed hashes (-> their identifier kind) on the list, under the request."""
    if hashes:
        await execute(
            session,
            """
            INSERT INTO enrich.do_not_track (identifier_hash, request_id, identifier_kind)
            SELECT identifier_hash, $1, identifier_kind
              FROM unnest($2::bytea[], $3::text[]) AS entry(identifier_hash, identifier_kind)
            ON CONFLICT DO NOTHING
            """,
            request_id,
            list(hashes),
            list(hashes.values()),
        )


async def on_do_not_track(session: AsyncSession, hashes: Iterable[bytes]) -> set[bytes]:
    """Those of `hashes` on the list (one index probe each)."""
    wanted = list(set(hashes))
    if not wanted:
        return set()
    rows = await fetch(
        session,
        "SELECT DISTINCT identifier_hash FROM enrich.do_not_track"
        " WHERE identifier_hash = ANY($1::bytea[])",
        wanted,
    )
    return {bytes(row["identifier_hash"]) for row in rows}


async def lift_do_not_track(session: AsyncSession, *, identifier_hash: bytes, by: str) -> list[str]:
    """Lift every entry of the requests that put `identifier_hash` on the list (the person asked
    to be tracked again: all their identifiers go), mark those requests unsuppressed by `by`;
    returns their ids (empty: the identifier was not on the list)."""
    rows = await fetch(
        session,
        """
        WITH requests AS (
            SELECT DISTINCT request_id FROM enrich.do_not_track WHERE identifier_hash = $1
        ), lifted AS (
            DELETE FROM enrich.do_not_track
             WHERE request_id IN (SELECT request_id FROM requests)
        )
        UPDATE enrich.erasure_requests SET unsuppressed_at = now(), unsuppressed_by = $2
         WHERE request_id IN (SELECT request_id FROM requests)
        RETURNING request_id
        """,
        identifier_hash,
        by,
    )
    return sorted(row["request_id"] for row in rows)
