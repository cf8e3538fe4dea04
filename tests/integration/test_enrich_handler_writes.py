"""enrich's handler against the real PostgreSQL (no broker): what a batch writes.

A lead row is rewritten only when its picture changes (a page view of a known lead leaves it
as it is, and its `lead_version` with it); the anonymous history a lead keeps is capped by what
is stored, across batches; one batch's lookups see links and leads stored by earlier batches."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich.handler import EnrichHandler, EnrichPolicy, unmerge
from services.enrich.references import References
from shared.consumer import Message
from shared.contracts import RawEvent
from shared.db import unit_of_work
from shared.topics import EVENTS_RAW
from tests.fixtures.enrich import PRIVACY_KEY, handle
from tests.unit.builders import NOW, identify, raw_event


def handler(*, max_anonymous_history: int = 500) -> EnrichHandler:
    return EnrichHandler(
        provider=None,
        references=References(),
        policy=EnrichPolicy(max_anonymous_history=max_anonymous_history),
        privacy_key=PRIVACY_KEY,
    )


def page(message_id: str, *, anonymous_id: str = "anon-1", minutes: int = 0) -> RawEvent:
    at = NOW + timedelta(minutes=minutes)
    return raw_event(
        type="page", name="/pricing", message_id=message_id, anonymous_id=anonymous_id,
        timestamp=at, received_at=at, properties={"path": "/pricing"},
    )  # fmt: skip


async def lead_row(db: asyncpg.Connection, lead_id: str) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT version, xmin::text AS written_by, anonymous_events_stored, email"
        " FROM enrich.leads WHERE lead_id = $1",
        lead_id,
    )
    assert row is not None
    return row


async def test_a_call_that_changes_nothing_leaves_the_lead_row_and_its_version(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    first = await handle(
        sessions, enrich, [identify(message_id="id-1", traits={"email": "ada@initech.com"})]
    )
    lead_id = first[0].lead_id
    stored = await lead_row(db, lead_id)

    later = await handle(sessions, enrich, [page("p-1", minutes=1), page("p-2", minutes=2)])

    assert [e.lead_id for e in later] == [lead_id, lead_id]
    assert [e.lead_version for e in later] == [first[0].lead_version] * 2
    assert all(e.profile.email == "ada@initech.com" and e.identified for e in later)
    assert await lead_row(db, lead_id) == stored  # same transaction id: not rewritten

    # A call that does change the picture is a new version, stored.
    changed = await handle(
        sessions,
        enrich,
        [identify(message_id="id-2", traits={"email": "ada@initech.com", "title": "CTO"})],
    )
    assert changed[0].lead_version == first[0].lead_version + 1
    assert changed[0].profile.seniority == "c-level"
    row = await lead_row(db, lead_id)
    assert (row["version"], row["written_by"] != stored["written_by"]) == (
        changed[0].lead_version,
        True,
    )


async def test_an_anonymous_lead_keeps_history_up_to_the_cap_across_batches(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler(max_anonymous_history=3)
    first = await handle(sessions, enrich, [page("p-1"), page("p-2", minutes=1)])
    lead_id = first[0].lead_id
    created = await lead_row(db, lead_id)

    # Later page views add history without rewriting the lead; the cap counts what is stored.
    later = await handle(sessions, enrich, [page("p-3", minutes=2), page("p-4", minutes=3)])
    assert {e.lead_id for e in later} == {lead_id}
    assert (await lead_row(db, lead_id))["written_by"] == created["written_by"]
    kept = await db.fetch(
        "SELECT message_id FROM enrich.anonymous_events WHERE lead_id = $1 ORDER BY seq", lead_id
    )
    assert [r["message_id"] for r in kept] == ["p-1", "p-2", "p-3"]

    # Identified under its own lead_id, its history is its own already: dropped, not re-emitted...
    known = await handle(
        sessions, enrich, [identify(message_id="id-1", traits={"email": "bo@initech.com"})]
    )
    assert [(e.message_id, e.lead_id, e.identified) for e in known] == [("id-1", lead_id, True)]
    assert await db.fetchval("SELECT count(*) FROM enrich.anonymous_events") == 0
    # ... and a page view after that keeps nothing.
    await handle(sessions, enrich, [page("p-5", minutes=5)])
    assert await db.fetchval("SELECT count(*) FROM enrich.anonymous_events") == 0


async def test_a_second_device_merges_into_the_lead_a_previous_batch_stored(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    laptop = await handle(
        sessions,
        enrich,
        [identify(message_id="id-1", user_id="usr-7", anonymous_id="laptop",
                  traits={"email": "cy@initech.com"})],
    )  # fmt: skip
    phone = await handle(sessions, enrich, [page("p-1", anonymous_id="phone")])
    assert phone[0].lead_id != laptop[0].lead_id

    login = await handle(
        sessions,
        enrich,
        [
            identify(message_id="id-2", user_id="usr-7", anonymous_id="phone"),
            page("p-2", anonymous_id="phone"),
        ],
    )

    kinds = [(e.kind, e.message_id, e.lead_id) for e in login]
    survivor = laptop[0].lead_id
    assert kinds[0] == ("event", "p-1", survivor)  # the phone's history, re-attributed
    assert (kinds[1][0], kinds[1][2]) == ("merged", survivor)
    assert kinds[2:] == [("event", "id-2", survivor), ("event", "p-2", survivor)]
    assert login[0].attributed_from is not None
    assert login[0].attributed_from.lead_id == phone[0].lead_id
    merged = await db.fetchrow(
        "SELECT version, merged_into FROM enrich.leads WHERE lead_id = $1", phone[0].lead_id
    )
    assert (merged["version"], merged["merged_into"]) == (phone[0].lead_version + 1, survivor)
    assert await db.fetchval("SELECT count(*) FROM enrich.anonymous_events") == 0
    owners = await db.fetch("SELECT kind, value, lead_id FROM enrich.identities ORDER BY 1, 2")
    assert {(r["kind"], r["value"]): r["lead_id"] for r in owners} == {
        ("anonymous_id", "laptop"): survivor,
        ("anonymous_id", "phone"): survivor,
        ("email", "cy@initech.com"): survivor,
        ("user_id", "usr-7"): survivor,
    }


class Abandoned(Exception):
    """Raised inside a batch's transaction to roll it back after the handler wrote it."""


async def handle_and_roll_back(
    sessions: async_sessionmaker[AsyncSession], enrich: EnrichHandler, event: RawEvent
) -> None:
    message = Message(topic=EVENTS_RAW, partition=0, offset=0, key=None, value=event)
    async with unit_of_work(sessions) as session:
        outputs = await enrich([message], session)
        assert [o.value.lead_version for o in outputs] == [2]  # type: ignore[union-attr]
        raise Abandoned


async def test_a_lead_written_elsewhere_is_read_again_not_taken_from_the_cache(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    first = await handle(
        sessions,
        enrich,
        [identify(message_id="id-1", traits={"email": "di@initech.com", "title": "VP Sales"})],
    )
    lead_id = first[0].lead_id
    # This process's batch changes the title, then its transaction rolls back (a retried
    # batch, a lost rebalance): the handler remembered the picture it wrote, as version 2.
    rolled_back = identify(message_id="id-2", traits={"email": "di@initech.com", "title": "CTO"})
    with pytest.raises(Abandoned):
        await handle_and_roll_back(sessions, enrich, rolled_back)
    # Another process stores a different version 2 of the same lead meanwhile.
    await db.execute(
        """UPDATE enrich.leads SET version = 2,
               profile = jsonb_set(profile, '{first_name}', '"Diana"')
           WHERE lead_id = $1""",
        lead_id,
    )

    later = await handle(sessions, enrich, [page("p-1", minutes=1)])

    assert (later[0].lead_id, later[0].lead_version) == (lead_id, 2)
    assert (later[0].profile.first_name, later[0].profile.title) == ("Diana", "VP Sales")


async def test_the_searchable_columns_follow_the_stored_picture(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    traits = {"email": "Eve.Ng@Initech.com", "name": "Eve Ng", "title": "VP Sales",
              "company": "Initech", "unsubscribed": True}  # fmt: skip
    lead_id = (await handle(sessions, enrich, [identify(message_id="id-1", traits=traits)]))[
        0
    ].lead_id

    row = await db.fetchrow(
        "SELECT email, first_name, last_name, title, company, company_domain, identified,"
        " email_opt_out, profile->>'seniority' AS seniority FROM enrich.leads WHERE lead_id = $1",
        lead_id,
    )
    assert row is not None
    assert dict(row) == {
        "email": "eve.ng@initech.com",
        "first_name": "Eve",
        "last_name": "Ng",
        "title": "VP Sales",
        "company": "Initech",
        "company_domain": "initech.com",
        "identified": True,
        "email_opt_out": True,
        "seniority": "vp",
    }


async def test_every_identity_names_a_stored_lead(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """No foreign key guards identities -> leads (migration 0003): the handler keeps it so,
    through new leads linked in the batch that creates them, merges and an unmerge."""
    enrich = handler()
    batch = [
        page("p-1", anonymous_id="v1"),
        identify(message_id="id-1", anonymous_id="v1", traits={"email": "fa@initech.com"}),
        page("p-2", anonymous_id="v2"),
        # Same person on a second browser, in the batch that created both leads: absorbed.
        identify(message_id="id-2", anonymous_id="v2", traits={"email": "fa@initech.com"}),
        raw_event(type="alias", message_id="al-1", anonymous_id="v3", previous_id="v4",
                  user_id="usr-9"),
        page("p-3", anonymous_id="v6"),  # a new visitor who stays anonymous
    ]  # fmt: skip
    first = await handle(sessions, enrich, batch)
    later = await handle(
        sessions,
        enrich,
        [
            identify(message_id="id-3", user_id="usr-9", traits={"email": "gi@initech.com"}),
            identify(message_id="id-4", anonymous_id="v5", traits={"email": "gi@initech.com"}),
        ],
    )
    merges = [e.merge for e in [*first, *later] if e.merge is not None]
    assert merges  # the batches did merge leads
    async with unit_of_work(sessions) as session:
        assert await unmerge(session, merge_id=merges[0].merge_id, by="ops", at=NOW)

    orphans = await db.fetch(
        "SELECT i.kind, i.lead_id FROM enrich.identities AS i"
        " LEFT JOIN enrich.leads AS l ON l.lead_id = i.lead_id WHERE l.lead_id IS NULL"
    )
    assert orphans == []
    assert await db.fetchval("SELECT count(*) FROM enrich.identities") >= 8
