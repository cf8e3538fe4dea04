"""enrich's part of an erasure, against the real PostgreSQL (the handler as the runner calls it):
the person is found through the identity graph (merged leads, every anonymousId), everything
enrich keeps about them is deleted, their identifiers go on the do-not-track list as keyed
hashes, and their later calls are dropped unseen, also when they race with the erasure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich import erasing, erasure_store
from services.enrich.erasures import identifier_of
from services.enrich.handler import EnrichHandler, EnrichPolicy
from services.enrich.metrics import DO_NOT_TRACK_DROPPED
from services.enrich.references import References
from shared.consumer import Message, Output
from shared.contracts import EnrichCommand, ErasureNotice, ErasureReport, RawEvent
from shared.db import unit_of_work
from shared.topics import ENRICH_COMMANDS, EVENTS_RAW, PRIVACY_REPORTS
from tests.fixtures.enrich import PRIVACY_KEY, handle
from tests.fixtures.privacy import traces_of
from tests.unit.builders import NOW, identify, raw_event

EMAIL = "ada.lovelace@initech.com"
PERSON = [EMAIL, "Lovelace", "+44 20 7946 0958", "usr-ada-1815", "anon-ada-1", "anon-ada-2",
          "203.0.113.77", "198.51.100.23"]  # fmt: skip


# Before her second device identifies, it is an anonymous visitor nobody can tie to her.
LINKED_BEFORE_HER_PHONE = [t for t in PERSON if t not in ("anon-ada-2", "198.51.100.23")]


def handler() -> EnrichHandler:
    return EnrichHandler(
        provider=None, references=References(), policy=EnrichPolicy(), privacy_key=PRIVACY_KEY
    )


def page(
    message_id: str, anonymous_id: str, *, ip: str = "192.0.2.1", minutes: int = 0
) -> RawEvent:
    at = NOW + timedelta(minutes=minutes)
    return raw_event(
        type="page", name="/pricing", message_id=message_id, anonymous_id=anonymous_id,
        timestamp=at, received_at=at,
        context={"ip": ip, "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"},
    )  # fmt: skip


def ada_arrives() -> list[RawEvent]:
    """Anonymous visit, identify, a second device, identified with her userId: two leads merged."""
    return [
        page("ada-p1", "anon-ada-1", ip="203.0.113.77"),
        identify(message_id="ada-i1", anonymous_id="anon-ada-1", timestamp=NOW + timedelta(minutes=1), traits={
            "email": EMAIL, "firstName": "Ada", "lastName": "Lovelace",
            "phone": "+44 20 7946 0958", "title": "VP Engineering", "company": "Initech"}),
        page("ada-p2", "anon-ada-2", ip="198.51.100.23", minutes=2),
    ]  # fmt: skip


def ada_on_her_phone() -> RawEvent:
    return identify(
        message_id="ada-i2", anonymous_id="anon-ada-2", user_id="usr-ada-1815",
        traits={"email": EMAIL},
    )  # fmt: skip


async def run(
    sessions: async_sessionmaker[AsyncSession],
    enrich: EnrichHandler,
    values: Sequence[BaseModel],
) -> list[Output]:
    topics = {RawEvent: EVENTS_RAW, EnrichCommand: ENRICH_COMMANDS, ErasureReport: PRIVACY_REPORTS}
    messages: list[Message[BaseModel]] = [
        Message(topic=topics[type(value)], partition=0, offset=n, key=None, value=value)
        for n, value in enumerate(values)
    ]
    async with unit_of_work(sessions) as session:
        return list(await enrich(messages, session))


async def request_erasure(
    sessions: async_sessionmaker[AsyncSession], kind: str, value: str, *, request_id: str
) -> EnrichCommand:
    """Store a request as `erasing.take_request` does; the command its sender would send."""
    identity = identifier_of(kind, value)
    async with unit_of_work(sessions) as session:
        await erasure_store.record_request(
            session, request_id=request_id, identity=identity,
            identifier_hash=erasing.hash_of(PRIVACY_KEY, identity),
            reason="GDPR art. 17, ticket 4411", requested_by="dpo",
        )  # fmt: skip
    return erasing.erase_command(request_id, by="dpo", at=datetime.now(UTC))


async def status(sessions: async_sessionmaker[AsyncSession], request_id: str) -> dict[str, Any]:
    async with sessions() as session:
        record = await erasure_store.get_request(session, request_id)
    assert record is not None
    return erasing.described(record)


async def test_an_erasure_removes_the_person_from_enrich_and_names_every_lead_they_had(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    first = await handle(sessions, enrich, ada_arrives())
    ada, second_device = first[1].lead_id, first[2].lead_id
    merged = await handle(sessions, enrich, [ada_on_her_phone()])
    assert merged[-1].lead_id == ada  # the second device merged in
    assert second_device != ada
    bob = (await handle(sessions, enrich, [identify(
        message_id="bob-i1", anonymous_id="anon-bob", traits={"email": "bob@globex.com"})]))[0]  # fmt: skip
    assert await traces_of(db, PERSON, schemas=["enrich"])  # she is there before

    command = await request_erasure(
        sessions, "email", " Ada.Lovelace@INITECH.com", request_id="r-1"
    )
    outputs = await run(sessions, enrich, [command])

    [notice] = [o.value for o in outputs]
    assert isinstance(notice, ErasureNotice)
    assert sorted(notice.lead_ids) == sorted([ada, second_device])
    assert await traces_of(db, PERSON, schemas=["enrich"]) == []
    assert await db.fetchval("SELECT email FROM enrich.leads WHERE lead_id = $1", bob.lead_id) == (
        "bob@globex.com"
    )
    described = await status(sessions, "r-1")
    assert described["status"] == "partial"  # enrich's part done, the others pending
    assert described["services"]["enrich"]["erased"]["leads"] == 2
    assert {s: p["status"] for s, p in described["services"].items()} == {
        "enrich": "complete", "score": "pending", "router": "pending", "console": "pending",
        "sync": "pending"}  # fmt: skip
    # Every identifier she had is on the list, as keyed hashes only.
    assert (
        await db.fetchval("SELECT count(*) FROM enrich.do_not_track") == 4
    )  # email, userId, 2 anon

    # Redelivered: nothing again.
    assert await run(sessions, enrich, [command]) == []

    # The other services report; the request is then complete.
    reports = [
        ErasureReport(request_id="r-1", service=s, erased={"leads": 2}, reported_at=NOW)
        for s in ("score", "router", "console", "sync")
    ]
    await run(sessions, enrich, reports)
    assert (await status(sessions, "r-1"))["status"] == "complete"


@pytest.mark.parametrize(
    "later",
    [
        page("later-1", "anon-ada-1"),  # a known device of hers
        identify(message_id="later-2", anonymous_id="anon-new", traits={"email": EMAIL.upper()}),
        raw_event(message_id="later-3", anonymous_id=None, user_id="usr-ada-1815"),
        # her email sent as a userId, as lead lists used to
        identify(message_id="later-4", anonymous_id=None, user_id=EMAIL, traits={}),
        # an alias joining a new device to her old userId
        raw_event(
            type="alias",
            event=None,
            message_id="later-5",
            anonymous_id="anon-new-2",
            user_id="usr-new",
            previous_id="usr-ada-1815",
        ),
    ],
    ids=["known anonymousId", "email", "userId", "email as userId", "alias of her userId"],
)
async def test_later_calls_of_an_erased_person_are_dropped_and_counted(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, later: RawEvent
) -> None:
    enrich = handler()
    await handle(sessions, enrich, [*ada_arrives(), ada_on_her_phone()])
    await run(sessions, enrich, [await request_erasure(sessions, "email", EMAIL, request_id="r-2")])
    dropped = DO_NOT_TRACK_DROPPED._value.get()

    outputs = await run(sessions, enrich, [later, page("other-1", "anon-someone-else")])

    assert [o.value.message_id for o in outputs] == ["other-1"]  # type: ignore[union-attr]
    assert DO_NOT_TRACK_DROPPED._value.get() == dropped + 1
    assert await traces_of(db, PERSON, schemas=["enrich"]) == []


async def test_an_unknown_identifier_is_recorded_as_nothing_found_and_blocked_all_the_same(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    command = await request_erasure(sessions, "email", "nobody@initech.com", request_id="r-3")
    assert await run(sessions, enrich, [command]) == []  # no leads: no notice for the others

    described = await status(sessions, "r-3")
    assert (described["status"], described["nothing_found"]) == ("complete", True)
    assert list(described["services"]) == ["enrich"]
    assert await traces_of(db, ["nobody@initech.com"], schemas=["enrich"]) == []
    later = identify(
        message_id="n-1", anonymous_id="anon-n", traits={"email": "nobody@initech.com"}
    )
    assert await run(sessions, enrich, [later]) == []


async def test_unsuppress_lets_a_person_be_tracked_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    enrich = handler()
    await handle(sessions, enrich, ada_arrives())
    await run(sessions, enrich, [await request_erasure(sessions, "email", EMAIL, request_id="r-4")])
    async with unit_of_work(sessions) as session:
        lifted = await erasure_store.lift_do_not_track(
            session,
            identifier_hash=erasing.hash_of(
                PRIVACY_KEY, identifier_of("anonymous_id", "anon-ada-1")
            ),
            by="dpo",
        )
    assert lifted == ["r-4"]
    # Every identifier of that request is lifted, not only the one named.
    outputs = await run(sessions, enrich, [identify(message_id="back-1", traits={"email": EMAIL})])
    assert [o.value.profile.email for o in outputs] == [EMAIL]  # type: ignore[union-attr]
    assert (await status(sessions, "r-4"))["unsuppressed_by"] == "dpo"


async def test_an_erasure_waits_for_a_batch_under_way_and_erases_what_it_linked(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """The batch holds the do-not-track gate shared; the erasure waits for it, then sees the
    new device the batch linked to her and erases it too."""
    enrich = handler()
    await handle(sessions, enrich, ada_arrives())
    command = await request_erasure(sessions, "email", EMAIL, request_id="r-5")
    new_device = identify(message_id="race-1", anonymous_id="anon-ada-3", traits={"email": EMAIL},
                          context={"ip": "203.0.113.99"})  # fmt: skip
    async with unit_of_work(sessions) as batch:
        await enrich(
            [Message(topic=EVENTS_RAW, partition=0, offset=0, key=None, value=new_device)], batch
        )
        erasure = asyncio.create_task(run(sessions, handler(), [command]))
        await asyncio.sleep(0.5)
        assert not erasure.done()  # waiting for the gate
    outputs = await asyncio.wait_for(erasure, 10)

    assert len(outputs) == 1
    assert (
        await traces_of(
            db, [*LINKED_BEFORE_HER_PHONE, "anon-ada-3", "203.0.113.99"], schemas=["enrich"]
        )
        == []
    )


async def test_a_batch_that_starts_during_an_erasure_waits_and_then_drops_her_calls(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    enrich = handler()
    await handle(sessions, enrich, ada_arrives())
    command = await request_erasure(sessions, "email", EMAIL, request_id="r-6")
    async with unit_of_work(sessions) as erasing_session:
        await handler()(
            [Message(topic=ENRICH_COMMANDS, partition=0, offset=0, key=None, value=command)],
            erasing_session,
        )
        batch = asyncio.create_task(run(sessions, enrich, [
            identify(message_id="race-2", anonymous_id="anon-ada-4", traits={"email": EMAIL})]))  # fmt: skip
        await asyncio.sleep(0.5)
        assert not batch.done()  # waiting for the gate
    assert await asyncio.wait_for(batch, 10) == []
    assert await traces_of(db, [*LINKED_BEFORE_HER_PHONE, "anon-ada-4"], schemas=["enrich"]) == []
