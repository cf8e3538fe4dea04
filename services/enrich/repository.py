"""enrich's tables (schema `enrich`). Every statement is batched: a batch of events, whatever
its size, takes three round trips (`claim_new_message_ids`, `find_by_identities`, `store_batch`),
plus a few per merge / unmerge on those rare paths.

SQL follows `shared.db`'s convention: `$n` parameters through `shared.db.fetch`/`execute` on
the session's transaction, a batch's rows as one JSON document per part
(`jsonb_array_elements` / `jsonb_to_recordset`) rather than executemany or one array per
column (asyncpg encodes an array element by element in Python), jsonb read back as Python
values.

Tables: leads (the lead's whole picture as JSON plus searchable columns), identities
(kind, value) -> lead, seen_messages (dedupe, with retention), anonymous_events (history of
leads not yet identified, kept to re-attribute), merges (reversible), pending_enrichment
(domains whose provider lookup failed), accounts, suppressions.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich.accounts import Account
from services.enrich.identity import Identity, IdentityKind, LeadFacts
from shared import advisory_locks
from shared.consumer.failures import ConcurrentUpdate
from shared.contracts import AccountMatch, Consent, Firmographics, LeadProfile
from shared.db import execute, fetch, fetchrow, fetchval, json_document

SCHEMA = "enrich"


@dataclass
class LeadRecord:
    """The lead as stored. Mutable inside one batch; `version` grows with every saved change."""

    lead_id: str
    profile: LeadProfile = field(default_factory=LeadProfile)
    identified: bool = False
    identified_at: datetime | None = None
    consent: Consent = field(default_factory=Consent)
    firmographics: Firmographics | None = None
    firmographics_pending: bool = False
    firmographics_domain: str | None = None  # the domain last looked up (found or not)
    account: AccountMatch | None = None
    version: int = 0
    merged_into: str | None = None
    anonymous_events_stored: int = 0

    def copy(self) -> LeadRecord:
        """A shallow copy (its parts are frozen models), without dataclasses.replace's cost."""
        twin = object.__new__(LeadRecord)
        twin.__dict__.update(self.__dict__)
        return twin


_KINDS = {kind.value: kind for kind in IdentityKind}


# -- dedupe -------------------------------------------------------------------------------------


DO_NOT_TRACK_GATE = advisory_locks.ENRICH_DO_NOT_TRACK_GATE
"""Held shared by every batch of events and exclusively by an erasure (`erasure_store`)."""


async def claim_new_message_ids(session: AsyncSession, message_ids: Sequence[str]) -> set[str]:
    """Record message ids as seen; return those not seen before (a client retry is not new).

    Its first act is to take the do-not-track gate shared (until the transaction ends), so that
    the batch's later statements see every erasure committed before it or wait for one under
    way. The lock is taken in this statement, so the do-not-track check must come after it."""
    if not message_ids:
        return set()
    rows = await fetch(
        session,
        """
        WITH gate AS (SELECT pg_advisory_xact_lock_shared($2, $3))
        INSERT INTO enrich.seen_messages (message_id)
        SELECT DISTINCT message_id
          FROM jsonb_array_elements_text($1::jsonb) AS message_id CROSS JOIN gate
        ON CONFLICT DO NOTHING
        RETURNING message_id
        """,
        json_document(list(message_ids)),
        *DO_NOT_TRACK_GATE,
    )
    return {row["message_id"] for row in rows}


FORGET_BATCH = 5_000
"""Rows a retention statement deletes at most (`shared.housekeeping.in_rounds`)."""


async def forget_seen_messages(session: AsyncSession, *, older_than_hours: float) -> int:
    """Delete up to `FORGET_BATCH` message ids seen longer ago than the retention; returns how
    many."""
    return await execute(
        session,
        """
        DELETE FROM enrich.seen_messages WHERE message_id IN (
            SELECT message_id FROM enrich.seen_messages
            WHERE seen_at < now() - make_interval(secs => $1)
            LIMIT $2)
        """,
        older_than_hours * 3600,
        FORGET_BATCH,
    )


# -- identities and leads ------------------------------------------------------------------------


_LEAD_COLUMNS = """lead_id, profile, identified, identified_at, consent, firmographics,
                   firmographics_pending, firmographics_domain, account, version, merged_into, anonymous_events_stored"""


def _lead(row: Mapping[str, Any]) -> LeadRecord:
    """A lead from its row (`_LEAD_COLUMNS`, by name)."""
    firmographics, account = row["firmographics"], row["account"]
    return LeadRecord(
        lead_id=row["lead_id"],
        profile=LeadProfile.model_validate(row["profile"] or {}),
        identified=row["identified"],
        identified_at=row["identified_at"],
        consent=Consent.model_validate(row["consent"] or {}),
        firmographics=Firmographics.model_validate(firmographics) if firmographics else None,
        firmographics_pending=row["firmographics_pending"],
        firmographics_domain=row["firmographics_domain"],
        account=AccountMatch.model_validate(account) if account else None,
        version=row["version"],
        merged_into=row["merged_into"],
        anonymous_events_stored=row["anonymous_events_stored"],
    )


class LeadCache:
    """Leads as this process last wrote them, each under the `xmin` of the row it wrote: a batch
    that finds the row unchanged (same `xmin`: no transaction wrote it since) takes the lead from
    here instead of reading and parsing its JSON columns again.

    `xmin` rather than `version`: a write that rolls back (a retried batch, a lost rebalance)
    leaves its version number free for another process to store a different picture under,
    whereas its transaction id never names a visible row. Entries are copies (the handler mutates
    its records), bounded in number, oldest dropped first; identities remember their last lead
    so that a batch can say which leads it holds before it knows whom its events name."""

    def __init__(self, *, leads: int = 2_048, identities: int = 8_192) -> None:
        self._leads: OrderedDict[str, tuple[str, LeadRecord]] = OrderedDict()
        self._owners: OrderedDict[Identity, str] = OrderedDict()
        self._max_leads = leads
        self._max_identities = identities

    def held(self, identities: Iterable[Identity]) -> dict[str, str]:
        """lead_id -> xmin of the held leads these identities pointed at when last seen."""
        held: dict[str, str] = {}
        for identity in identities:
            lead_id = self._owners.get(identity)
            if lead_id is not None and (entry := self._leads.get(lead_id)) is not None:
                held[lead_id] = entry[0]
        return held

    def get(self, lead_id: str, xmin: str) -> LeadRecord | None:
        entry = self._leads.get(lead_id)
        if entry is None or entry[0] != xmin:
            return None
        self._leads.move_to_end(lead_id)
        return entry[1].copy()

    def put(self, lead: LeadRecord, xmin: str) -> None:
        self._leads[lead.lead_id] = (xmin, lead.copy())
        self._leads.move_to_end(lead.lead_id)
        if len(self._leads) > self._max_leads:
            self._leads.popitem(last=False)

    def forget(self, lead_ids: Iterable[str]) -> None:
        for lead_id in lead_ids:
            self._leads.pop(lead_id, None)

    def link(self, owners: Iterable[tuple[Identity, str]]) -> None:
        for identity, lead_id in owners:
            self._owners[identity] = lead_id
            self._owners.move_to_end(identity)
        while len(self._owners) > self._max_identities:
            self._owners.popitem(last=False)


@dataclass
class Found:
    """What a batch's identities name in the database: the lead of each known identity, and
    those leads' resolution facts and records (locked for the transaction)."""

    known: dict[Identity, str] = field(default_factory=dict)
    facts: dict[str, LeadFacts] = field(default_factory=dict)
    leads: dict[str, LeadRecord] = field(default_factory=dict)


# One round trip per batch: the identities' leads, locked in lead_id order (another process's
# batch waits for ours), each with its facts (userIds not email-derived, anonymousIds attached in the last 7 days)
# and, for a lead not yet identified, how many anonymous events it keeps. Every part is an index
# lookup per wanted identity or lead, so its cost follows the batch, not the tables' size. The
# JSON columns of a lead the caller holds unchanged (same xmin; $2 maps lead_id -> xmin) are
# left out. The wanted identities come as one JSON array of [kind, value] (see `_STORE`).
_FIND = """
WITH found AS (
    -- LIMIT 1 (the key is unique anyway) keeps this a primary-key probe per wanted identity:
    -- as a join, the planner scans the whole table once it is small enough to hash.
    SELECT link.lead_id, array_agg(wanted.kind) AS kinds, array_agg(wanted.value) AS found_values
    FROM (SELECT element->>0 AS kind, element->>1 AS value
          FROM jsonb_array_elements($1::jsonb) AS element) AS wanted
    CROSS JOIN LATERAL (
        SELECT identity_link.lead_id FROM enrich.identities AS identity_link
        WHERE identity_link.kind = wanted.kind AND identity_link.value = wanted.value LIMIT 1
    ) AS link
    GROUP BY link.lead_id
)
SELECT lead.lead_id, lead.xmin::text AS row_xmin, cached.held,
    CASE WHEN NOT cached.held THEN lead.profile END AS profile,
    CASE WHEN NOT cached.held THEN lead.consent END AS consent,
    CASE WHEN NOT cached.held THEN lead.firmographics END AS firmographics,
    CASE WHEN NOT cached.held THEN lead.account END AS account,
    lead.identified, lead.identified_at, lead.firmographics_pending, lead.firmographics_domain,
    lead.version, lead.merged_into, lead.anonymous_events_stored, found.kinds, found.found_values,
    -- its userIds, without the email-derived ones (one of its email identities, whose values
    -- are normalised: lower case, trimmed; `identity.email_of` on the Python side)
    ARRAY(SELECT user_link.value FROM enrich.identities AS user_link
          WHERE user_link.lead_id = lead.lead_id AND user_link.kind = 'user_id'
            AND NOT EXISTS (SELECT 1 FROM enrich.identities AS email_link
                            WHERE email_link.kind = 'email'
                              AND email_link.value = lower(btrim(user_link.value))
                              AND email_link.lead_id = lead.lead_id)) AS user_ids,
    (SELECT count(*) FROM enrich.identities AS anonymous_link
     WHERE anonymous_link.lead_id = lead.lead_id AND anonymous_link.kind = 'anonymous_id'
       AND anonymous_link.created_at > now() - interval '7 days') AS anonymous_ids_this_week,
    CASE WHEN lead.identified THEN 0 ELSE
        (SELECT count(*) FROM enrich.anonymous_events AS kept_event
         WHERE kept_event.lead_id = lead.lead_id)
    END AS history_kept
FROM found
JOIN enrich.leads AS lead ON lead.lead_id = found.lead_id
CROSS JOIN LATERAL (
    SELECT coalesce($2::jsonb ->> lead.lead_id = lead.xmin::text, false) AS held
) AS cached
ORDER BY lead.lead_id
FOR UPDATE OF lead
"""


async def find_by_identities(
    session: AsyncSession, identities: Iterable[Identity], *, cache: LeadCache | None = None
) -> Found:
    """The leads the identities point at, locked for this transaction, with their facts (a
    lead `cache` holds unchanged is taken from it).

    A lead's `anonymous_events_stored` is read as the anonymous events it keeps now (retention
    included), so an event that only adds history does not have to rewrite the lead."""
    wanted = sorted(set(identities))
    found = Found()
    if not wanted:
        return found
    held = cache.held(wanted) if cache is not None else {}
    rows = await fetch(
        session,
        _FIND,
        json_document([(identity.kind.value, identity.value) for identity in wanted]),
        json_document(held),
    )
    for row in rows:
        lead_id = row["lead_id"]
        lead = None
        if row["held"] and cache is not None:
            lead = cache.get(lead_id, row["row_xmin"])
        if lead is None:
            if row["held"]:  # evicted since `held`: read it whole
                return await find_by_identities(session, wanted)
            lead = _lead(row)
        lead.anonymous_events_stored = row["history_kept"]
        found.leads[lead_id] = lead
        found.facts[lead_id] = LeadFacts(
            lead_id=lead_id,
            identified=lead.identified,
            user_ids=frozenset(row["user_ids"]),
            anonymous_ids_this_week=row["anonymous_ids_this_week"],
        )
        for kind, value in zip(row["kinds"], row["found_values"], strict=True):
            found.known[Identity(_KINDS[kind], value)] = lead_id
    return found


async def get_leads(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadRecord]:
    """The leads, locked for this transaction (another process's batch waits for ours)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = await fetch(
        session,
        f"SELECT {_LEAD_COLUMNS} FROM enrich.leads"
        " WHERE lead_id = ANY($1::text[]) ORDER BY lead_id FOR UPDATE",
        ids,
    )
    return {row["lead_id"]: _lead(row) for row in rows}


async def get_leads_waiting_for(session: AsyncSession, domain: str) -> list[LeadRecord]:
    rows = await fetch(
        session,
        f"SELECT {_LEAD_COLUMNS} FROM enrich.leads"
        " WHERE company_domain = $1 AND firmographics_pending AND merged_into IS NULL"
        " ORDER BY lead_id FOR UPDATE",
        domain,
    )
    return [_lead(row) for row in rows]


async def move_identities(
    session: AsyncSession, *, from_lead: str, to_lead: str, only: Sequence[Identity] | None = None
) -> list[Identity]:
    """Re-point identities of `from_lead` (all, or `only` those) at `to_lead`; returns them."""
    if only is not None:
        rows = await fetch(
            session,
            """
            UPDATE enrich.identities AS link SET lead_id = $1
            FROM unnest($3::text[], $4::text[]) AS moving(kind, value)
            WHERE link.kind = moving.kind AND link.value = moving.value AND link.lead_id = $2
            RETURNING link.kind, link.value
            """,
            to_lead,
            from_lead,
            [identity.kind.value for identity in only],
            [identity.value for identity in only],
        )
    else:
        rows = await fetch(
            session,
            "UPDATE enrich.identities SET lead_id = $1 WHERE lead_id = $2 RETURNING kind, value",
            to_lead,
            from_lead,
        )
    return sorted(Identity(IdentityKind(row["kind"]), row["value"]) for row in rows)


# What a batch writes, in one statement: new identity links, dropped and new anonymous history,
# and the changed leads (their searchable columns taken from the JSON sent). Its parts touch
# different rows (history is dropped for leads identified in the batch, kept for leads still
# anonymous), so the order PostgreSQL runs them in does not matter. A new identity's lead is
# among the leads written here or already stored (no foreign key checks it: migration 0003;
# `test_every_identity_names_a_stored_lead` does). Each part comes as one JSON document
# (`shared.db.json_document`, ~250 array elements a batch otherwise); the lead's JSON parts and
# the history payloads are embedded as they are, parsed once by PostgreSQL.
_STORE = """
WITH linked AS (
    INSERT INTO enrich.identities (kind, value, lead_id)
    SELECT link->>0, link->>1, link->>2 FROM jsonb_array_elements($1::jsonb) AS link
    ON CONFLICT DO NOTHING
    RETURNING 1
), dropped AS (
    DELETE FROM enrich.anonymous_events WHERE lead_id = ANY($2::text[])
), kept AS (
    INSERT INTO enrich.anonymous_events (lead_id, message_id, payload)
    SELECT kept_event->>0, kept_event->>1, kept_event->2
    FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS history(kept_event, ordinal)
    ORDER BY ordinal
), saved AS (
    INSERT INTO enrich.leads (lead_id, email, first_name, last_name, title, company,
        company_domain, identified, email_opt_out, profile, identified_at, consent,
        firmographics, firmographics_pending, firmographics_domain, account, version,
        merged_into, anonymous_events_stored)
    SELECT lead_id, profile->>'email', profile->>'first_name', profile->>'last_name',
           profile->>'title', profile->>'company', profile->>'company_domain', identified,
           coalesce((consent->>'email_opt_out')::boolean, false), profile, identified_at,
           consent, firmographics, firmographics_pending, firmographics_domain, account,
           version, merged_into, anonymous_events_stored
    FROM jsonb_to_recordset($4::jsonb) AS lead(lead_id text, identified boolean,
        profile jsonb, identified_at timestamptz, consent jsonb, firmographics jsonb,
        firmographics_pending boolean, firmographics_domain text, account jsonb,
        version bigint, merged_into text, anonymous_events_stored integer)
    ON CONFLICT (lead_id) DO UPDATE SET
        email = EXCLUDED.email, first_name = EXCLUDED.first_name,
        last_name = EXCLUDED.last_name, title = EXCLUDED.title,
        company = EXCLUDED.company, company_domain = EXCLUDED.company_domain,
        identified = EXCLUDED.identified, email_opt_out = EXCLUDED.email_opt_out,
        profile = EXCLUDED.profile, identified_at = EXCLUDED.identified_at,
        consent = EXCLUDED.consent, firmographics = EXCLUDED.firmographics,
        firmographics_pending = EXCLUDED.firmographics_pending,
        firmographics_domain = EXCLUDED.firmographics_domain,
        account = EXCLUDED.account, version = EXCLUDED.version,
        merged_into = EXCLUDED.merged_into,
        anonymous_events_stored = EXCLUDED.anonymous_events_stored,
        updated_at = now()
    RETURNING lead_id, xmin::text AS row_xmin
)
SELECT (SELECT count(*) FROM linked) AS linked,
       ARRAY(SELECT lead_id FROM saved) AS lead_ids,
       ARRAY(SELECT row_xmin FROM saved) AS xmins
"""


def _fragment(value: BaseModel | None) -> orjson.Fragment | None:
    """A model as JSON already serialised, for orjson to embed without re-encoding."""
    return None if value is None else orjson.Fragment(value.model_dump_json())


def _lead_document(lead: LeadRecord) -> dict[str, Any]:
    """A lead as one row of `_STORE`'s leads document (keyed by its column names)."""
    return {
        "lead_id": lead.lead_id,
        "identified": lead.identified,
        "profile": _fragment(lead.profile),
        "identified_at": lead.identified_at,
        "consent": _fragment(lead.consent),
        "firmographics": _fragment(lead.firmographics),
        "firmographics_pending": lead.firmographics_pending,
        "firmographics_domain": lead.firmographics_domain,
        "account": _fragment(lead.account),
        "version": lead.version,
        "merged_into": lead.merged_into,
        "anonymous_events_stored": lead.anonymous_events_stored,
    }


async def store_batch(
    session: AsyncSession,
    *,
    links: Sequence[tuple[Identity, str]] = (),
    history_dropped: Iterable[str] = (),
    history: Sequence[HistoryRow] = (),
    leads: Sequence[LeadRecord] = (),
    cache: LeadCache | None = None,
) -> None:
    """Write a batch's effects in one statement: point new identities at their leads, drop the
    anonymous history of `history_dropped` leads, append `history` in the given order (seq
    follows it), insert or update `leads` (a lead given twice: its last record).

    Raises `ConcurrentUpdate` if another process linked one of the identities first: the batch
    is then handled again and sees that link. `cache`: remembers each lead under the xmin of
    the row written (every write of a lead the cache may hold goes through here with it, so it
    never holds a stale picture under the xmin of a later write of the same transaction)."""
    unique = list({lead.lead_id: lead for lead in leads}.values())
    dropped = sorted(set(history_dropped))
    if not (links or dropped or history or unique):
        return
    row = await fetchrow(
        session,
        _STORE,
        json_document(
            [(identity.kind.value, identity.value, lead_id) for identity, lead_id in links]
        ),
        dropped,
        json_document([(kept.lead_id, kept.message_id, kept.payload) for kept in history]),
        json_document([_lead_document(lead) for lead in unique]),
    )
    assert row is not None
    if row["linked"] != len(links):
        raise ConcurrentUpdate("an identity was linked by another process")
    if cache is not None:
        written = {lead.lead_id: lead for lead in unique}
        for lead_id, xmin in zip(row["lead_ids"], row["xmins"], strict=True):
            cache.put(written[lead_id], xmin)


async def save_leads(
    session: AsyncSession, leads: Sequence[LeadRecord], *, cache: LeadCache | None = None
) -> None:
    """Insert or update the leads (`store_batch` with leads only)."""
    await store_batch(session, leads=leads, cache=cache)


# -- anonymous history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    lead_id: str
    message_id: str
    payload: dict[str, Any]


async def take_anonymous_history(session: AsyncSession, lead_id: str) -> list[HistoryRow]:
    """Remove and return a lead's kept history, oldest first. Removal commits with the outputs
    that re-emit it, so it is re-emitted exactly once."""
    rows = await fetch(
        session,
        "DELETE FROM enrich.anonymous_events WHERE lead_id = $1 RETURNING seq, message_id, payload",
        lead_id,
    )
    return [
        HistoryRow(lead_id=lead_id, message_id=row["message_id"], payload=row["payload"])
        for row in sorted(rows, key=lambda row: row["seq"])
    ]


async def forget_old_anonymous_history(session: AsyncSession, *, older_than_days: float) -> int:
    """Delete up to `FORGET_BATCH` anonymous events stored longer ago than the retention."""
    return await execute(
        session,
        """
        DELETE FROM enrich.anonymous_events WHERE (lead_id, seq) IN (
            SELECT lead_id, seq FROM enrich.anonymous_events
            WHERE stored_at < now() - make_interval(secs => $1)
            LIMIT $2)
        """,
        older_than_days * 86400,
        FORGET_BATCH,
    )


# -- merges --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeRecord:
    """A merge as recorded. `merged_lead_snapshot` / `surviving_lead_snapshot`: both leads'
    pictures just before it (`merges.snapshot`; the survivor's is None for merges recorded
    before it was kept). `aliased`: an alias call joined them."""

    merge_id: str
    surviving_lead_id: str
    merged_lead_id: str
    reason: str
    history_replayed: bool
    moved_identities: tuple[Identity, ...]
    merged_lead_snapshot: dict[str, Any]
    triggered_by: str
    surviving_lead_snapshot: dict[str, Any] | None = None
    aliased: bool = False
    merged_at: datetime | None = None
    unmerged_at: datetime | None = None


async def record_merge(session: AsyncSession, merge: MergeRecord) -> None:
    await execute(
        session,
        """
        INSERT INTO enrich.merges (merge_id, surviving_lead_id, merged_lead_id, reason,
            history_replayed, moved_identities, merged_lead_snapshot, triggered_by,
            surviving_lead_snapshot, aliased)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9::jsonb, $10)
        """,
        merge.merge_id,
        merge.surviving_lead_id,
        merge.merged_lead_id,
        merge.reason,
        merge.history_replayed,
        json_document(
            [[identity.kind.value, identity.value] for identity in merge.moved_identities]
        ),
        json_document(merge.merged_lead_snapshot),
        merge.triggered_by,
        None
        if merge.surviving_lead_snapshot is None
        else json_document(merge.surviving_lead_snapshot),
        merge.aliased,
    )


def _merge(row: Mapping[str, Any]) -> MergeRecord:
    return MergeRecord(
        merge_id=row["merge_id"],
        surviving_lead_id=row["surviving_lead_id"],
        merged_lead_id=row["merged_lead_id"],
        reason=row["reason"],
        history_replayed=row["history_replayed"],
        moved_identities=tuple(
            Identity(IdentityKind(kind), value) for kind, value in row["moved_identities"]
        ),
        merged_lead_snapshot=row["merged_lead_snapshot"],
        triggered_by=row["triggered_by"],
        surviving_lead_snapshot=row["surviving_lead_snapshot"],
        aliased=row["aliased"],
        merged_at=row["merged_at"],
        unmerged_at=row["unmerged_at"],
    )


_MERGE_COLUMNS = """merge_id, surviving_lead_id, merged_lead_id, reason, history_replayed,
    moved_identities, merged_lead_snapshot, triggered_by, surviving_lead_snapshot, aliased,
    merged_at, unmerged_at"""


async def get_merge(session: AsyncSession, merge_id: str, *, lock: bool) -> MergeRecord | None:
    row = await fetchrow(
        session,
        f"SELECT {_MERGE_COLUMNS} FROM enrich.merges WHERE merge_id = $1"
        + (" FOR UPDATE" if lock else ""),
        merge_id,
    )
    return _merge(row) if row else None


async def get_merges_of(session: AsyncSession, lead_id: str) -> list[MergeRecord]:
    rows = await fetch(
        session,
        f"SELECT {_MERGE_COLUMNS} FROM enrich.merges"
        " WHERE surviving_lead_id = $1 OR merged_lead_id = $1 ORDER BY merged_at",
        lead_id,
    )
    return [_merge(row) for row in rows]


async def forget_old_merges(session: AsyncSession, *, older_than_days: float) -> int:
    """Delete up to `FORGET_BATCH` merges recorded longer ago than the retention (by
    `merged_at`'s index); returns how many. Their pictures go with them: they can no longer be
    reversed."""
    return await execute(
        session,
        """
        DELETE FROM enrich.merges WHERE merge_id IN (
            SELECT merge_id FROM enrich.merges
            WHERE merged_at < now() - make_interval(secs => $1)
            LIMIT $2)
        """,
        older_than_days * 86400,
        FORGET_BATCH,
    )


async def mark_unmerged(session: AsyncSession, merge_id: str, *, by: str) -> None:
    await execute(
        session,
        "UPDATE enrich.merges SET unmerged_at = now(), unmerged_by = $2 WHERE merge_id = $1",
        merge_id,
        by,
    )


# -- re-enrichment -------------------------------------------------------------------------------


async def request_enrichment(session: AsyncSession, domains: Iterable[str]) -> None:
    """Queue domains whose lookup failed; a domain already queued keeps its schedule."""
    wanted = sorted(set(domains))
    if wanted:
        await execute(
            session,
            """
            INSERT INTO enrich.pending_enrichment (domain)
            SELECT unnest($1::text[])
            ON CONFLICT (domain) DO NOTHING
            """,
            wanted,
        )


async def claim_due_domains(session: AsyncSession, *, limit: int, lease_s: float) -> list[str]:
    """Domains due for another lookup, leased for `lease_s` so other processes skip them."""
    rows = await fetch(
        session,
        """
        UPDATE enrich.pending_enrichment SET next_attempt_at = now()
            + make_interval(secs => $2)
        WHERE domain IN (
            SELECT domain FROM enrich.pending_enrichment WHERE next_attempt_at <= now()
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING domain
        """,
        limit,
        lease_s,
    )
    return sorted(row["domain"] for row in rows)


async def reschedule_enrichment(
    session: AsyncSession, *, domain: str, error: str, initial_s: float, max_s: float
) -> None:
    await execute(
        session,
        """
        UPDATE enrich.pending_enrichment SET attempts = attempts + 1, last_error = $2,
            next_attempt_at = now() + make_interval(
                secs => least($4, $3 * power(2, attempts)))
        WHERE domain = $1
        """,
        domain,
        error[:500],
        initial_s,
        max_s,
    )


async def enrichment_done(session: AsyncSession, domain: str) -> None:
    await execute(session, "DELETE FROM enrich.pending_enrichment WHERE domain = $1", domain)


# -- accounts and suppressions -------------------------------------------------------------------


async def upsert_accounts(session: AsyncSession, accounts: Sequence[Account]) -> None:
    """Insert or update accounts by account_id (one given twice: its last row)."""
    if not accounts:
        return
    await execute(
        session,
        """
        INSERT INTO enrich.accounts (account_id, name, domain, type, owner_id, owner_email)
        SELECT account_id, name, domain, type, owner_id, owner_email
        FROM jsonb_to_recordset($1::jsonb) AS account(account_id text, name text, domain text,
             type text, owner_id text, owner_email text)
        ON CONFLICT (account_id) DO UPDATE SET name = EXCLUDED.name,
            domain = EXCLUDED.domain, type = EXCLUDED.type, owner_id = EXCLUDED.owner_id,
            owner_email = EXCLUDED.owner_email, updated_at = now()
        """,
        # dataclasses: objects keyed by field name
        json_document(list({account.account_id: account for account in accounts}.values())),
    )


async def get_accounts(session: AsyncSession) -> list[Account]:
    rows = await fetch(
        session,
        "SELECT account_id, name, domain, type, owner_id, owner_email FROM enrich.accounts"
        " ORDER BY account_id",
    )
    return [
        Account(
            account_id=row["account_id"],
            name=row["name"],
            type=row["type"],
            domain=row["domain"],
            owner_id=row["owner_id"],
            owner_email=row["owner_email"],
        )
        for row in rows
    ]


async def reference_version(session: AsyncSession) -> str:
    """Changes whenever accounts or suppressions change: the cue to rebuild the in-memory index."""
    version = await fetchval(
        session,
        """
        SELECT (SELECT count(*) || ':' || coalesce(max(updated_at)::text, '')
                FROM enrich.accounts) || '/' ||
               (SELECT count(*) || ':' || coalesce(max(added_at)::text, '')
                FROM enrich.suppressions)
        """,
    )
    return str(version)


async def upsert_suppressions(session: AsyncSession, entries: Sequence[tuple[str, str]]) -> None:
    """Insert or update suppressions by value, lower-cased (one given twice: its last reason)."""
    reasons = {value.lower(): reason for value, reason in entries}
    if reasons:
        await execute(
            session,
            """
            INSERT INTO enrich.suppressions (value, reason)
            SELECT value, reason FROM unnest($1::text[], $2::text[]) AS entry(value, reason)
            ON CONFLICT (value) DO UPDATE SET reason = EXCLUDED.reason
            """,
            list(reasons),
            list(reasons.values()),
        )


async def get_suppressions(session: AsyncSession) -> dict[str, str]:
    rows = await fetch(session, "SELECT value, reason FROM enrich.suppressions")
    return {row["value"]: row["reason"] for row in rows}
