"""A person's erasure in score against the real PostgreSQL, at the handler (the consumer runner
would hand it the same batches): every row of the person's leads goes, the merged leads'
included, and the rows of other leads stay; no text or JSON column of score's schema holds the
person's email, name, ids or addresses afterwards; a stored simulation keeps its counts but no
longer lists them; the report counts what went; a redelivered notice is harmless; and a
message about an erased lead arriving later (in a later batch, later in the same batch, or
waiting on the erasure's locks) is dropped and counted, never creating the lead again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import yaml
from prometheus_client import REGISTRY
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.engine.rescoring import LeadChange, ScoreView, SimulationSummary
from services.score.engine.ruleset import DEFAULT_RULES_FILE, RuleSet
from services.score.handler import ScoreHandler
from services.score.rules_versions import pinned
from shared.consumer import Message, Output
from shared.contracts import CrmFeedback, EnrichedEvent, ErasureNotice, ErasureReport, ScoreCommand
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import (
    CRM_FEEDBACK,
    EVENTS_ENRICHED,
    LEADS_LIFECYCLE,
    LEADS_SCORED,
    PRIVACY_ERASURES,
    PRIVACY_REPORTS,
    SCORE_COMMANDS,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

# The person: the survivor `ada`, an identified lead merged into it (its history moved over,
# with `origin`), and an anonymous visitor absorbed into it (its history replayed under `ada`,
# its own rows kept as they were).
ADA, ADA_KNOWN, ADA_VISITOR = "lead-ada", "lead-ada-work", "lead-ada-visitor"
PERSON = [ADA, ADA_KNOWN, ADA_VISITOR]
# What would let someone find her: none of it may be left anywhere in score's schema.
EMAIL, WORK_EMAIL = "adaline@northwind.io", "a.lovelacey@northwind.io"
FIRST, LAST, PHONE = "Adaline", "Lovelacey", "+442079460123"
USER_ID, ANONYMOUS_ID = "user-adaline-42", "anon-adaline-7"
IP, IP6, AGENT = "84.17.52.103", "2a00:1450:4001:82b::200e", "AdaBrowser/9.1 (Lovelacey)"
# (the addresses also as they are stored: truncated)
PII = [EMAIL, WORK_EMAIL, FIRST, LAST, PHONE, USER_ID, ANONYMOUS_ID, AGENT, IP, IP6,
       "84.17.52.0", "2a00:1450:4001::"]  # fmt: skip


def rules() -> RuleSet:
    """The default rules and two that read the visitor's address and browser, so that the
    history keeps them (truncated) and the erasure has them to delete."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text())
    document["version"] = "test-erasure"
    document["rules"] += [
        {"id": "office-network", "group": "intent", "points": 5, "reason": "from the office",
         "when": {"field": "context.ip", "regex": r"^(84\.17\.|2a00:)"}},
        {"id": "no-bot", "group": "signals", "points": 0, "reason": "a browser",
         "when": {"not": {"field": "context.userAgent", "contains": "bot"}}},
    ]  # fmt: skip
    return RuleSet.model_validate(document)


RULES = rules()


def event(lead: str, message_id: str, minutes: int, **fields: Any) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": message_id, "lead_id": lead, "lead_version": 1, "source": "website",
         "identified": True, "type": "track", "event": "Webinar Attended",
         "timestamp": T0 + timedelta(minutes=minutes), "received_at": T0, **fields}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 0, minutes, lead.encode(), value)


def ada_event(lead: str, message_id: str, minutes: int, **fields: Any) -> Message[BaseModel]:
    """An event of hers, with everything a call may carry about her."""
    email = EMAIL if lead == ADA else WORK_EMAIL
    call: dict[str, Any] = {
        "profile": {"email": email, "first_name": FIRST, "last_name": LAST, "phone": PHONE,
                    "title": "VP Sales", "seniority": "vp", "job_function": "sales"},
        "context": {"ip": IP if minutes % 2 else IP6, "userAgent": AGENT,
                    "traits": {"email": email, "name": f"{FIRST} {LAST}"},
                    "campaign": {"name": f"spring {LAST}"}},
        "properties": {"userId": USER_ID, "anonymousId": ANONYMOUS_ID, "title": f"Hi {FIRST}"},
    }  # fmt: skip
    return event(lead, message_id, minutes, **{**call, **fields})


def bob_event(lead: str, message_id: str, minutes: int, **fields: Any) -> Message[BaseModel]:
    call: dict[str, Any] = {
        "profile": {"email": f"{lead}@globex.com", "seniority": "vp", "job_function": "sales"},
        "context": {"ip": "198.51.100.7", "userAgent": "Mozilla/5.0"},
    }
    return event(lead, message_id, minutes, **{**call, **fields})


def merge(survivor: str, merged: str, *, replayed: bool) -> Message[BaseModel]:
    value = EnrichedEvent.model_validate(
        {"message_id": f"merge-{merged}", "lead_id": survivor, "source": "website",
         "identified": True, "timestamp": T0 + timedelta(minutes=30), "received_at": T0,
         "kind": "merged", "lead_version": 2,
         "merge": {"merge_id": f"mg-{merged}", "surviving_lead_id": survivor,
                   "merged_lead_ids": [merged], "reason": "same email",
                   "history_replayed": replayed}}
    )  # fmt: skip
    return Message(EVENTS_ENRICHED, 1, 0, survivor.encode(), value)


def feedback(lead: str, feedback_id: str, outcome: str = "accepted") -> Message[BaseModel]:
    value = CrmFeedback.model_validate(
        {"feedback_id": feedback_id, "lead_id": lead, "outcome": outcome,
         "at": T0 + timedelta(hours=1), "reason": f"called {FIRST}" if lead == ADA else None}
    )  # fmt: skip
    return Message(CRM_FEEDBACK, 0, 0, lead.encode(), value)


def command(lead: str, kind: str) -> Message[BaseModel]:
    value = ScoreCommand(command_id=f"{kind}:{lead}:{uuid.uuid4().hex[:6]}", kind=kind,
                         lead_id=lead, at=T0 + timedelta(hours=2))  # fmt: skip
    return Message(SCORE_COMMANDS, 0, 0, lead.encode(), value)


def notice(lead_ids: Sequence[str], request_id: str = "erase-1") -> Message[BaseModel]:
    value = ErasureNotice(request_id=request_id, lead_ids=list(lead_ids),
                          requested_at=T0, erased_at=T0 + timedelta(minutes=1))  # fmt: skip
    return Message(PRIVACY_ERASURES, 0, 0, request_id.encode(), value)


def reports(outputs: Sequence[Output]) -> list[ErasureReport]:
    found = [o.value for o in outputs if o.topic == PRIVACY_REPORTS]
    assert all(isinstance(r, ErasureReport) for r in found)
    return found  # type: ignore[return-value]


def dropped(topic: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadflow_score_erased_lead_messages_dropped_total", {"topic": topic}
    )
    return value or 0.0


async def tables(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'score' AND table_type = 'BASE TABLE' ORDER BY table_name"
    )
    return [row["table_name"] for row in rows]


async def dump(db: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of score's schema, as JSON objects (a test's own snapshot)."""
    snapshot = {}
    for table in await tables(db):
        rows = await db.fetch(f'SELECT to_jsonb(t)::text AS row FROM score."{table}" AS t')
        snapshot[table] = sorted((orjson.loads(r["row"]) for r in rows), key=orjson.dumps)
    return snapshot


async def found_anywhere(db: asyncpg.Connection, values: Sequence[str]) -> list[str]:
    """(value, table.column) for each value found in a text or JSON column of score's schema."""
    columns = await db.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'score' "
        "AND data_type IN ('text', 'jsonb', 'json', 'character varying', 'ARRAY')"
    )
    assert len(columns) > 20  # the search reads score's tables (a wrong schema finds nothing)
    found = []
    for column in columns:
        table, name = column["table_name"], column["column_name"]
        for value in values:
            hits = await db.fetchval(
                f'SELECT count(*) FROM score."{table}" WHERE "{name}"::text LIKE $1',
                f"%{value}%",
            )
            if hits:
                found.append(f"{value} in {table}.{name}")
    return found


async def store_simulation(db: asyncpg.Connection, lead_ids: Sequence[str]) -> uuid.UUID:
    """A finished simulation whose result lists these leads (as `simulate_stored` stores it)."""
    view = ScoreView(fit=40, behaviour=30, total=70, priority="A2", qualifies_as_mql=True)
    changes = [LeadChange(lead_id=i, email=f"{i}@x.io" if i != ADA else EMAIL, stage="lead",
                          before=view, after=view) for i in lead_ids]  # fmt: skip
    summary = SimulationSummary(
        live_version="1", candidate_version="draft", as_of=T0, leads=9, scores_changed=3,
        grades_changed=1, stage_changes=len(lead_ids), would_become_mql=len(lead_ids),
        would_drop_below_mql=0, becoming_mql=changes, dropping_below_mql=[],
        becoming_ids=list(lead_ids),
    )  # fmt: skip
    simulation_id = uuid.uuid4()
    await db.execute(
        "INSERT INTO score.simulations (id, kind, status, requested_by, finished_at, done, "
        "total, result) VALUES ($1, 'rules', 'done', 'revops', now(), 9, 9, $2::text::jsonb)",
        simulation_id,
        summary.model_dump_json(),
    )
    return simulation_id


class Score:
    """The handler on a database, one batch per call, each in its own transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.handler = ScoreHandler(pinned(RULES))

    async def __call__(self, *messages: Message[BaseModel]) -> list[Output]:
        async with unit_of_work(self.sessions) as session:
            return list(await self.handler(messages, session))


async def populate(score: Score, db: asyncpg.Connection) -> uuid.UUID:
    """Her leads and two others (bob, carol) with rows in every table score has, and two
    simulations: one listing her and bob (its id returned), one listing bob alone."""
    refusal = {"kind": "user_id", "reason": "another_user_id", "other_lead_id": "lead-bob",
               "detail": "user id not linked: it belongs to a lead with another userId"}  # fmt: skip
    await score(
        ada_event(ADA, "ada-1", 1, identity_refusals=[refusal]),
        ada_event(ADA_KNOWN, "ada-work-1", 2, event="Content Downloaded"),
        ada_event(ADA_VISITOR, "ada-visit-1", 3, type="page", event=None, identified=False,
                  properties={"path": "/pricing", "anonymousId": ANONYMOUS_ID}),
        bob_event("lead-bob", "bob-1", 1),
        bob_event("lead-carol", "carol-1", 1),
    )  # fmt: skip
    await score(
        ada_event(ADA, "ada-2", 4, event="Demo Requested"),  # an MQL
        bob_event("lead-bob", "bob-2", 4, event="Demo Requested"),
        # one of her visitor's calls, re-attributed to carol (counted under carol: `origin`)
        bob_event("lead-carol", "ada-visit-2", 5, type="page", event=None,
                  properties={"path": "/pricing"}, attributed_from={"lead_id": ADA_VISITOR}),
    )  # fmt: skip
    await score(merge(ADA, ADA_KNOWN, replayed=False), merge(ADA, ADA_VISITOR, replayed=True))
    await score(feedback(ADA, "fb-ada"), feedback("lead-bob", "fb-bob"))
    listing = await store_simulation(db, [ADA, "lead-bob", ADA_KNOWN])
    await store_simulation(db, ["lead-bob"])
    return listing


async def test_an_erasure_deletes_every_row_of_the_person_and_nothing_else(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    score = Score(create_sessionmaker(engine))
    try:
        listing_id = await populate(score, db)
        before = await dump(db)
        # she is in every table score keeps about leads (else the test proves nothing)
        for table in ("leads", "ledger", "history", "stage_changes", "feedback",
                      "identity_notes"):  # fmt: skip
            assert {r["lead_id"] for r in before[table]} >= {ADA}, table
        assert {r["lead_id"] for r in before["leads"]} >= set(PERSON)
        assert any(r["origin"] == ADA_KNOWN and r["lead_id"] == ADA for r in before["history"])
        assert any(r["lead_id"] == ADA_VISITOR for r in before["history"])
        assert any(r["origin"] == ADA_VISITOR for r in before["history"])  # under carol
        assert {r["lead_id"] for r in before["feedback"]} == {ADA, "lead-bob"}
        assert len(await found_anywhere(db, PII)) > 10

        outputs = await score(notice(PERSON))

        after = await dump(db)
        assert await found_anywhere(db, PII) == []
        # Every other row is as it was: a table's rows now are its rows before, less hers.
        carried = {(r["lead_id"], r["message_id"]) for r in before["history"]
                   if r["origin"] in PERSON}  # fmt: skip
        assert carried == {(ADA, "ada-work-1"), ("lead-carol", "ada-visit-2")}

        def hers(table: str, row: dict[str, Any]) -> bool:
            if table in ("simulations", "erased_leads"):
                return False
            return (
                row.get("lead_id") in PERSON
                or row.get("origin") in PERSON
                or (table == "ledger" and (row["lead_id"], row["message_id"]) in carried)
            )

        erased = {}
        for table, rows in before.items():
            if table in ("simulations", "erased_leads"):
                continue
            kept = [row for row in rows if not hers(table, row)]
            assert after[table] == kept, table
            erased[table] = len(rows) - len(kept)
        assert {r["lead_id"] for r in after["leads"]} == {"lead-bob", "lead-carol"}
        assert [r["message_id"] for r in after["history"] if r["lead_id"] == "lead-carol"] == [
            "carol-1"
        ]
        assert len(after["erased_leads"]) == 3  # hashes of the ids, nothing else
        # The simulations keep their counts; hers are no longer listed.
        (listing,) = [r for r in after["simulations"] if r["id"] == str(listing_id)]
        (other,) = [r for r in after["simulations"] if r["id"] != str(listing_id)]
        assert listing["result"]["becoming_ids"] == ["lead-bob"]
        assert [c["lead_id"] for c in listing["result"]["becoming_mql"]] == ["lead-bob"]
        assert listing["result"]["would_become_mql"] == 3
        assert listing["result"]["ids_complete"] is False
        assert other in before["simulations"]

        (report,) = reports(outputs)
        assert (report.request_id, report.service) == ("erase-1", "score")
        assert report.erased == {table: n for table, n in erased.items() if n}
        assert set(report.erased) == {"leads", "ledger", "history", "stage_changes", "feedback",
                                      "identity_notes"}  # fmt: skip
        assert report.anonymised == {"simulations": 1}
        assert [o for o in outputs if o.topic != PRIVACY_REPORTS] == []

        # (b) the notice redelivered: nothing left to erase, a report again, nothing changed
        (again,) = reports(await score(notice(PERSON)))
        assert (again.erased, again.anonymised) == ({}, {})
        assert await dump(db) == after
    finally:
        await engine.dispose()


async def test_messages_about_an_erased_lead_arriving_later_are_dropped_and_counted(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    score = Score(create_sessionmaker(engine))
    try:
        await populate(score, db)
        await score(notice(PERSON))
        erased = await dump(db)
        counted = {t: dropped(t.name) for t in (EVENTS_ENRICHED, CRM_FEEDBACK, SCORE_COMMANDS)}

        # Every kind of message about her leads, produced before the erasure, consumed after,
        # in one batch with a message of bob's.
        late = [
            ada_event(ADA, "ada-3", 6),
            ada_event(ADA_KNOWN, "ada-work-2", 7, kind="profile_updated", type=None,
                      lead_version=3),
            ada_event(ADA_VISITOR, "ada-visit-3", 8, type="identify", event=None),
            merge(ADA, ADA_KNOWN, replayed=False),
            feedback(ADA, "fb-ada-2", "qualified"),
            command(ADA, "rescore"),
            command(ADA, "reevaluate"),
        ]  # fmt: skip
        outputs = await score(*late, bob_event("lead-bob", "bob-3", 9))

        assert all(o.key == "lead-bob" for o in outputs)
        assert [o.topic for o in outputs] == [LEADS_SCORED]
        assert await found_anywhere(db, PII) == []
        now = await dump(db)
        assert {r["lead_id"] for r in now["leads"]} == {"lead-bob", "lead-carol"}
        for table in ("ledger", "history", "stage_changes", "feedback", "identity_notes"):
            assert not [r for r in now[table] if r["lead_id"] in PERSON], table
        # bob's event was scored; nothing else changed
        assert ("lead-bob", "bob-3") in {(r["lead_id"], r["message_id"]) for r in now["history"]}
        assert now["stage_changes"] == erased["stage_changes"]
        assert dropped(EVENTS_ENRICHED.name) - counted[EVENTS_ENRICHED] == 4
        assert dropped(CRM_FEEDBACK.name) - counted[CRM_FEEDBACK] == 1
        assert dropped(SCORE_COMMANDS.name) - counted[SCORE_COMMANDS] == 2
    finally:
        await engine.dispose()


async def test_an_erasure_in_a_batch_erases_what_came_before_and_drops_what_comes_after(
    database_url: str, db: asyncpg.Connection
) -> None:
    """A batch may hold a lead's messages and its erasure: what the batch scored for the lead
    before the notice is erased with the rest (and its outputs are not sent), what comes after
    is dropped; the other leads of the batch are scored as usual."""
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    score = Score(create_sessionmaker(engine))
    try:
        await score(ada_event(ADA, "ada-1", 1))
        before = dropped(EVENTS_ENRICHED.name)
        outputs = await score(
            ada_event(ADA, "ada-2", 2, event="Demo Requested"),  # an MQL: a lifecycle change
            ada_event(ADA_KNOWN, "ada-work-1", 3),  # new to score
            bob_event("lead-bob", "bob-1", 3, event="Demo Requested"),
            notice([ADA, ADA_KNOWN], "erase-batch"),
            ada_event(ADA, "ada-3", 4),
            ada_event(ADA_KNOWN, "ada-work-2", 5),
        )
        (report,) = reports(outputs)
        assert report.erased["leads"] == 2
        assert report.erased["history"] == 3
        assert report.erased["stage_changes"] >= 2  # known, then MQL
        assert {o.key for o in outputs if o.topic in (LEADS_SCORED, LEADS_LIFECYCLE)} == {
            "lead-bob"
        }
        assert dropped(EVENTS_ENRICHED.name) - before == 2
        assert await found_anywhere(db, PII) == []
        leads = await db.fetch("SELECT lead_id, stage FROM score.leads")
        assert [(r["lead_id"], r["stage"]) for r in leads] == [("lead-bob", "mql")]
    finally:
        await engine.dispose()


async def test_a_message_handled_concurrently_with_the_erasure_is_erased_or_dropped(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Both orders of a race between another replica's batch of her messages and the erasure:
    whichever takes her lead lock second waits for the first to commit, then erases what it
    wrote, or finds her erased."""
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    score = Score(sessions)

    async def waits(task: asyncio.Task[list[Output]]) -> None:
        await asyncio.sleep(0.5)
        assert not task.done(), "it did not wait for the lock"

    try:
        # The erasure first: her new lead's first event waits for it, then is dropped.
        before = dropped(EVENTS_ENRICHED.name)
        async with unit_of_work(sessions) as session:
            (report,) = reports(await score.handler([notice([ADA], "erase-a")], session))
            assert report.erased == {}  # score knew nothing of her yet
            late = asyncio.create_task(score(ada_event(ADA, "ada-1", 1)))
            await waits(late)
        assert await late == []
        assert dropped(EVENTS_ENRICHED.name) - before == 1
        assert await db.fetchval("SELECT count(*) FROM score.history") == 0

        # Her event first (another lead): the erasure waits for it, then erases what it wrote.
        async with unit_of_work(sessions) as session:
            scored = await score.handler([ada_event(ADA_KNOWN, "ada-work-1", 1)], session)
            assert scored
            erasure = asyncio.create_task(score(notice([ADA_KNOWN], "erase-b")))
            await waits(erasure)
        (report,) = reports(await erasure)
        assert (report.erased["leads"], report.erased["history"]) == (1, 1)
        assert await db.fetchval("SELECT count(*) FROM score.leads") == 0
        assert await found_anywhere(db, PII) == []
    finally:
        await engine.dispose()
