"""The router's part of an erasure, against the real PostgreSQL (the handler as the runner calls
it): every row about the person's leads (merged ones included) is deleted, the reps' loads
stay counted, a notice delivered again is harmless, a message about an erased lead that
arrives later is dropped and counted on every path a batch can take, and the lead locks close
the race with a batch of the same lead on another replica, either way round."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.handler import RouterHandler
from services.router.metrics import ERASED_LEAD_MESSAGES_DROPPED
from services.router.routing_config import load_routing
from services.router.routing_versions import pinned
from shared.consumer import Message, Output
from shared.contracts import (
    Consent,
    CrmFeedback,
    ErasureNotice,
    ErasureReport,
    LeadProfile,
    LifecycleChanged,
    RouterCommand,
    RoutingDecision,
    Score,
    Stage,
)
from shared.db import create_engine, create_sessionmaker, json_document, unit_of_work
from shared.migrations import alembic_config
from shared.privacy import lead_id_digest
from shared.settings import DatabaseSettings
from shared.topics import (
    CRM_FEEDBACK,
    LEADS_LIFECYCLE,
    PRIVACY_ERASURES,
    ROUTER_COMMANDS,
    ROUTING_CURRENT,
)
from tests.fixtures.infra import REPO
from tests.fixtures.privacy import traces_of
from tests.fixtures.routing import decisions_in

ROUTING = """\
version: test-erasure
teams:
  - name: sdr
    manager: {id: mgr-emmy, name: Emmy Noether, email: emmy@example.com}
    reps:
      - {id: rep-a, name: Rep A, email: a@example.com, daily_cap: 20}
      - {id: rep-b, name: Rep B, email: b@example.com, daily_cap: 20}
default_team: sdr
fallback_queue: sdr-unassigned
nurture: {default: general-nurture}
sla:
  default: 4h
"""

ADA, ADA_PHONE, BOB = "lead-ada", "lead-ada-phone", "lead-bob"  # ADA_PHONE was merged into ADA
ADA_EMAIL, ADA_PHONE_EMAIL = "ada.lovelace@initech.com", "ada.l@fastmail.example"
HER = [ADA, ADA_PHONE, ADA_EMAIL, ADA_PHONE_EMAIL, "Augusta", "Lovelace", "+44 20 7946 0958"]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def router(tmp_path: Path) -> RouterHandler:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    return RouterHandler(
        pinned(load_routing(path)),
        sla_recheck=timedelta(minutes=5),
        backfill_horizon=timedelta(hours=72),
    )


def change(lead: str, to_stage: Stage, tag: str = "1", *, opted_out: bool = False,
           email: str | None = None) -> LifecycleChanged:  # fmt: skip
    now = datetime.now(UTC)  # live: a change older than the backfill horizon is history
    person = lead in (ADA, ADA_PHONE)
    return LifecycleChanged(
        transition_id=f"{lead}:{to_stage.value}:{tag}",
        lead_id=lead,
        from_stage=Stage.LEAD,
        to_stage=to_stage,
        reason="total score 110 >= MQL threshold 80",
        at=now,
        received_at=now,
        profile=LeadProfile(
            email=email or (ADA_EMAIL if lead == ADA else f"{lead}@example.com"),
            first_name="Augusta" if person else "Bob",
            last_name="Lovelace" if person else "Builder",
            phone="+44 20 7946 0958" if person else None,
            company="Initech" if person else "Globex",
        ),
        consent=Consent(email_opt_out=opted_out),
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority="A1"),
    )


def feedback(lead: str, feedback_id: str = "f-1") -> CrmFeedback:
    return CrmFeedback(feedback_id=feedback_id, lead_id=lead, outcome="accepted",
                       at=datetime.now(UTC))  # fmt: skip


def check(decision_id: str, lead: str) -> RouterCommand:
    return RouterCommand(command_id=f"sla:{decision_id}", kind="sla_check", lead_id=lead,
                         decision_id=decision_id, at=datetime.now(UTC))  # fmt: skip


def notice(*lead_ids: str, request_id: str = "r-1") -> ErasureNotice:
    now = datetime.now(UTC)
    return ErasureNotice(request_id=request_id, lead_ids=list(lead_ids), requested_at=now,
                         erased_at=now)  # fmt: skip


TOPICS = {LifecycleChanged: LEADS_LIFECYCLE, CrmFeedback: CRM_FEEDBACK,
          RouterCommand: ROUTER_COMMANDS, ErasureNotice: PRIVACY_ERASURES}  # fmt: skip


def messages(values: tuple[BaseModel, ...]) -> list[Message[BaseModel]]:
    return [Message(topic=TOPICS[type(value)], partition=0, offset=n, key=None, value=value)
            for n, value in enumerate(values)]  # fmt: skip


async def handle(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, *values: BaseModel
) -> list[Output]:
    async with unit_of_work(sessions) as session:
        return list(await router(messages(values), session))


def decided(outputs: list[Output]) -> list[RoutingDecision]:
    return decisions_in(outputs)


def reports(outputs: list[Output]) -> list[ErasureReport]:
    return [o.value for o in outputs if isinstance(o.value, ErasureReport)]


def dropped(kind: str) -> float:
    value: float = ERASED_LEAD_MESSAGES_DROPPED.labels(kind=kind)._value.get()
    return value


async def rows_of(db: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the router's lead tables and loads, in a fixed order."""
    found = {}
    for table in ("decisions", "suppressions", "sla_breaches", "rep_loads"):
        rows = await db.fetch(f"SELECT * FROM router.{table}")  # literal table names
        found[table] = sorted(tuple(str(v) for v in row.values()) for row in rows)
    return found


async def breach_sdr_decision(
    sessions: async_sessionmaker[AsyncSession],
    router: RouterHandler,
    db: asyncpg.Connection,
    lead: str,
) -> list[Output]:
    """Make the lead's open sdr decision due and check it: a breach, and a reassignment."""
    decision_id = await db.fetchval(
        "UPDATE router.decisions SET sla_due_at = now() - interval '1 minute'"
        " WHERE lead_id = $1 AND route = 'sdr' AND closed_at IS NULL RETURNING decision_id",
        lead,
    )
    assert decision_id is not None
    return await handle(sessions, router, check(decision_id, lead))


async def ada_everywhere(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    """Ada in every router table, and her merged lead (nurture, then suppressed); Bob beside
    her; a simulation result listing both."""
    await handle(sessions, router, change(ADA_PHONE, Stage.LEAD, email=ADA_PHONE_EMAIL))
    await handle(sessions, router, change(ADA_PHONE, Stage.KNOWN, "2", opted_out=True,
                                          email=ADA_PHONE_EMAIL))  # fmt: skip
    first = await handle(sessions, router, change(ADA, Stage.MQL), change(BOB, Stage.MQL))
    assert {d.lead_id for d in decided(first)} == {ADA, BOB}
    reassigned = decided(await breach_sdr_decision(sessions, router, db, ADA))
    assert [d.strategy for d in reassigned] == ["sla_reassigned"]
    await db.execute(
        "INSERT INTO router.simulations (id, kind, status, requested_by, result)"
        " VALUES (gen_random_uuid(), 'routing', 'done', 'rev-ops', $1::jsonb)",
        json_document(
            {"replayed": 2, "owner_changes": 2, "changes": [
                {"lead_id": ADA, "email": ADA_EMAIL, "live": {"owner": "rep-a"}},
                {"lead_id": BOB, "email": f"{BOB}@example.com", "live": {"owner": "rep-b"}}]}
        ),
    )  # fmt: skip
    assert len(await traces_of(db, HER, schemas=["router"])) > 10  # she is there before


async def test_an_erasure_deletes_every_row_of_the_person_s_leads_and_keeps_the_loads(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions, router, db)
    before = await rows_of(db)

    outputs = await handle(sessions, router, notice(ADA, ADA_PHONE))

    [report] = reports(outputs)
    assert (report.request_id, report.service) == ("r-1", "router")
    # Ada: her first decision and its reassignment (which withdrew it), her current route; her
    # merged lead: a nurture decision (cancelled while it settled) and a suppression (opted
    # out); one breach; one simulation result with an example of hers.
    assert report.erased == {
        "decisions": 3,
        "suppressions": 1,
        "sla_breaches": 1,
        "withdrawals": 1,
        "routes": 1,
    }
    assert report.anonymised == {"simulations": 1}
    assert decided(outputs) == []
    # routing.current forgets both leads
    assert [(o.key, o.value) for o in outputs if o.topic is ROUTING_CURRENT] == [
        (lead, None) for lead in sorted((ADA, ADA_PHONE))
    ]
    assert await traces_of(db, HER, schemas=["router"]) == []
    after = await rows_of(db)
    assert after["rep_loads"] == before["rep_loads"], "the reps' loads stay counted"
    assert after["decisions"] == [r for r in before["decisions"] if BOB in r[2]]
    assert after["decisions"], "Bob's decision is untouched"
    result = json.loads(await db.fetchval("SELECT result FROM router.simulations"))
    assert [e["lead_id"] for e in result["changes"]] == [BOB]
    assert result["owner_changes"] == 2, "the counts stay as the replay found them"
    erased = await db.fetch("SELECT lead_digest FROM router.erased_leads ORDER BY 1")
    assert {bytes(r[0]) for r in erased} == {lead_id_digest(ADA), lead_id_digest(ADA_PHONE)}


async def test_a_notice_delivered_again_changes_nothing_and_reports_again(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_everywhere(sessions, router, db)
    await handle(sessions, router, notice(ADA, ADA_PHONE))
    before = await rows_of(db)

    [again] = reports(await handle(sessions, router, notice(ADA, ADA_PHONE)))

    assert (again.erased, again.anonymised) == ({}, {})
    assert await rows_of(db) == before
    assert await db.fetchval("SELECT count(*) FROM router.erased_leads") == 2


async def test_a_notice_of_leads_the_router_never_saw_reports_nothing_erased(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    [report] = reports(await handle(sessions, router, notice("lead-unseen")))
    assert (report.erased, report.anonymised) == ({}, {})
    # and a stage change of it later is dropped all the same
    assert decided(await handle(sessions, router, change("lead-unseen", Stage.MQL))) == []


async def test_messages_about_erased_leads_arriving_later_are_dropped_and_counted(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    """Every way a batch can start: sdr routing (`start_batch`), nurture only (one statement),
    no trigger (`start_transitions`), and the cold path of feedback and SLA checks (the lead
    locks answer which leads were erased)."""
    await ada_everywhere(sessions, router, db)
    ada_decision = await db.fetchval(
        "SELECT decision_id FROM router.decisions WHERE lead_id = $1 LIMIT 1", ADA
    )
    await handle(sessions, router, notice(ADA, ADA_PHONE))
    changes, feedbacks, checks = (dropped("stage change"), dropped("crm feedback"),
                                  dropped("sla check"))  # fmt: skip

    sdr = await handle(sessions, router, change(ADA, Stage.MQL, "late"),
                       change("lead-carl", Stage.MQL))  # fmt: skip
    nurture = await handle(sessions, router, change(ADA_PHONE, Stage.LEAD, "late"))
    nothing = await handle(sessions, router, change(ADA, Stage.ANONYMOUS, "late"))
    cold = await handle(
        sessions, router,
        feedback(ADA), check(ada_decision, ADA), change(ADA_PHONE, Stage.MQL, "late-2"),
        feedback(BOB, "f-bob"),
    )  # fmt: skip

    assert [d.lead_id for d in decided(sdr)] == ["lead-carl"], "others in the batch are routed"
    assert decided(nurture) == decided(nothing) == decided(cold) == []
    assert dropped("stage change") == changes + 4
    assert dropped("crm feedback") == feedbacks + 1
    assert dropped("sla check") == checks + 1
    assert await traces_of(db, HER, schemas=["router"]) == []
    bob = await db.fetch("SELECT closed_reason FROM router.decisions WHERE lead_id = $1", BOB)
    assert [r[0] for r in bob] == ["crm: accepted"], "Bob's report in the same batch applies"


async def test_an_erasure_waits_for_a_batch_of_the_lead_under_way_and_erases_what_it_wrote(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    """Ada's first stage change is being routed on one replica (no row of hers committed yet:
    only the lead lock covers her) when her erasure arrives on another."""
    async with unit_of_work(sessions) as batch:
        routed = await router(messages((change(ADA, Stage.MQL),)), batch)
        assert len(decided(list(routed))) == 1
        erasure = asyncio.create_task(handle(sessions, router, notice(ADA)))
        await asyncio.sleep(0.5)
        assert not erasure.done(), "the erasure waits for the lead's lock"
    [report] = reports(await asyncio.wait_for(erasure, 10))

    assert report.erased == {"decisions": 1, "routes": 1}
    assert await traces_of(db, HER, schemas=["router"]) == []


async def test_a_batch_of_the_lead_waits_for_an_erasure_under_way_and_then_drops_it(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    before = dropped("stage change")
    async with unit_of_work(sessions) as erasing:
        await router(messages((notice(ADA),)), erasing)
        batch = asyncio.create_task(handle(sessions, router, change(ADA, Stage.MQL)))
        await asyncio.sleep(0.5)
        assert not batch.done(), "the batch waits for the lead's lock"
    assert decided(await asyncio.wait_for(batch, 10)) == []

    assert dropped("stage change") == before + 1
    assert await traces_of(db, HER, schemas=["router"]) == []


async def test_an_erasure_waits_for_an_sla_check_of_the_lead_and_erases_its_reassignment(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await handle(sessions, router, change(ADA, Stage.MQL))
    decision_id = await db.fetchval(
        "UPDATE router.decisions SET sla_due_at = now() - interval '1 minute'"
        " WHERE lead_id = $1 RETURNING decision_id",
        ADA,
    )
    async with unit_of_work(sessions) as batch:
        reassigned = await router(messages((check(decision_id, ADA),)), batch)
        assert len(decided(list(reassigned))) == 1
        erasure = asyncio.create_task(handle(sessions, router, notice(ADA)))
        await asyncio.sleep(0.5)
        assert not erasure.done(), "the erasure waits for the check's lead lock"
    [report] = reports(await asyncio.wait_for(erasure, 10))

    assert report.erased == {"decisions": 2, "sla_breaches": 1, "withdrawals": 1, "routes": 1}
    assert await traces_of(db, HER, schemas=["router"]) == []


async def test_the_database_s_digest_of_a_lead_id_is_the_shared_one(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    """`router.lock_leads` and `router.start_transitions` look leads up by a digest computed in
    SQL; `ErasedLeads.remember` stores `lead_id_digest`'s. Non-ASCII ids included."""
    for lead_id in ("lead-1", "lead-ü-ß-東京"):
        digest = await db.fetchval("SELECT sha256(convert_to($1::text, 'UTF8'))", lead_id)
        assert bytes(digest) == lead_id_digest(lead_id)


async def test_the_migration_downgrades_to_the_previous_batch_start_and_upgrades_again(
    db: asyncpg.Connection, database_url: str
) -> None:
    config = alembic_config(
        migrations_dir=REPO / "services" / "router" / "migrations",
        schema="router",
        database_url=database_url,
    )
    start = "SELECT * FROM router.start_transitions('{t}'::text[], '{l}'::text[], now(), 'r')"
    assert [tuple(r.keys()) for r in await db.fetch(start)] == []

    await asyncio.to_thread(command.downgrade, config, "0005")
    assert await db.fetchval("SELECT to_regclass('router.erased_leads')") is None
    assert await db.fetchval("SELECT to_regprocedure('router.lock_leads(text[])')") is None
    await db.execute("INSERT INTO router.suppressions (transition_id, lead_id, reason)"
                     " VALUES ('t', 'l', 'opted out')")  # fmt: skip
    assert [dict(r) for r in await db.fetch(start)] == [{"transition_id": "t"}]

    await asyncio.to_thread(command.upgrade, config, "head")
    assert [dict(r) for r in await db.fetch(start)] == [
        {"transition_id": "t", "erased": False, "lead_id": None, "sequence": None,
         "decision_id": None, "route": None}
    ]  # fmt: skip
