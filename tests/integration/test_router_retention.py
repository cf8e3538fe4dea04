"""The router keeps a decision's personal parts only while it needs them, against the real
PostgreSQL (the handler as the runner calls it, housekeeping as its companion runs it):
decisions, suppressions and simulations past `LEADFLOW_ROUTER_DECISION_PAYLOAD_RETENTION_DAYS`
are scrubbed (rows kept, nothing of the person left), newer ones untouched, a scrubbed row never
written again, by partial indexes (the plans, and the pages a round reads); the erased leads'
records are forgotten past their own retention; one replica at a time, never waiting for the
consumer. What reads decisions still works on scrubbed ones: the routing history (HTTP and
CLI), an open decision's SLA check, feedback and next stage change, and simulations."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import housekeeping as housekeeping_module
from services.router.config import RouterSettings
from services.router.handler import RouterHandler
from services.router.history_view import render_history
from services.router.housekeeping import (
    EMPTIED_PAYLOAD_FIELDS,
    HOUSEKEEPING_LOCK,
    KEPT_PAYLOAD_FIELDS,
    SCRUB_DECISIONS,
    SCRUB_SIMULATIONS,
    SCRUB_SUPPRESSIONS,
    housekeeping,
    housekeeping_round,
)
from services.router.http import router_api
from services.router.routing_config import RoutingConfig, load_routing
from services.router.routing_versions import pinned, routing_versions
from services.router.simulation_runs import simulate_draft
from shared.consumer import Message, Output
from shared.contracts import (
    Consent,
    Contribution,
    CrmFeedback,
    LeadProfile,
    LifecycleChanged,
    RouterCommand,
    RoutingDecision,
    Score,
    Stage,
)
from shared.db import create_engine, create_sessionmaker, execute, json_document, unit_of_work
from shared.http import create_api
from shared.privacy import lead_id_digest
from shared.secret_hashes import secret_hash
from shared.service_api import serve_clients
from shared.settings import ApiClient, ApiSettings, DatabaseSettings
from shared.simulations import Progress, Simulations
from shared.topics import CRM_FEEDBACK, LEADS_LIFECYCLE, ROUTER_COMMANDS
from tests.fixtures.privacy import traces_of
from tests.fixtures.routing import decisions_in, release_settled

ROUTING = """\
version: test-retention
teams:
  - name: sdr
    manager: {id: mgr-emmy, name: Emmy Noether, email: emmy@example.com}
    reps:
      - {id: rep-a, name: Rep A, email: a@example.com, daily_cap: 50}
      - {id: rep-b, name: Rep B, email: b@example.com, daily_cap: 50}
default_team: sdr
fallback_queue: sdr-unassigned
nurture: {default: general-nurture}
sla:
  default: 4h
"""

# Ada's leads: an MQL (sdr, then reassigned after an SLA breach), one in nurture, one opted out
# through the suppression list (its reason quotes her address), one disqualified by a CRM
# (its reason quotes what sales wrote). Bob: an MQL of 89 days ago, and one of today.
ADA, ADA_NURTURE, ADA_LISTED, ADA_DISQUALIFIED = (
    "lead-ada", "lead-ada-nurture", "lead-ada-listed", "lead-ada-dq")  # fmt: skip
ADA_LEADS = [ADA, ADA_NURTURE, ADA_LISTED, ADA_DISQUALIFIED]
BOB, BOB_TODAY = "lead-bob", "lead-bob-today"
ADA_EMAIL = "ada.lovelace@initech.com"
# What names her: address, names, phone, company, and what a CRM and the suppression list said.
HER = [ADA_EMAIL, "Augusta", "Lovelace", "+44 20 7946 0958", "Initech", "call her after 5pm",
       "asked in person"]  # fmt: skip
DAY_S = 86400.0
PAST = 91  # days: past the default retention (90)
CRM_TOKEN = "r" * 43
CLIENTS = ApiSettings(
    clients={"crm": ApiClient(token_sha256=secret_hash(CRM_TOKEN), scopes=["leads:read"])}
)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> RoutingConfig:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    return load_routing(path)


@pytest.fixture
def router(config: RoutingConfig) -> RouterHandler:
    return RouterHandler(
        pinned(config), sla_recheck=timedelta(minutes=5), backfill_horizon=timedelta(hours=72)
    )


def change(
    lead: str,
    to_stage: Stage,
    tag: str = "1",
    *,
    reason: str = "total score 110 >= MQL threshold 80",
    consent: Consent | None = None,
) -> LifecycleChanged:
    now = datetime.now(UTC)  # live: a change older than the backfill horizon is history
    hers = lead in ADA_LEADS
    return LifecycleChanged(
        transition_id=f"{lead}:{to_stage.value}:{tag}",
        lead_id=lead,
        from_stage=Stage.LEAD,
        to_stage=to_stage,
        reason=reason,
        at=now,
        received_at=now,
        profile=LeadProfile(
            email=ADA_EMAIL if hers else f"{lead}@example.com",
            first_name="Augusta" if hers else "Bob",
            last_name="Lovelace" if hers else "Builder",
            phone="+44 20 7946 0958" if hers else None,
            company="Initech" if hers else "Globex",
            title="CTO",
        ),
        consent=consent or Consent(),
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority="A1"),
        top_contributions=[Contribution(rule_id="demo", points=60, reason="asked for a demo")],
    )


TOPICS = {LifecycleChanged: LEADS_LIFECYCLE, CrmFeedback: CRM_FEEDBACK,
          RouterCommand: ROUTER_COMMANDS}  # fmt: skip


async def handle(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, *values: BaseModel
) -> list[Output]:
    """One batch of `values`, then the release of the nurture decisions it made (as the
    decision timer releases them once settled): what the router sent."""
    messages: list[Message[BaseModel]] = [
        Message(topic=TOPICS[type(value)], partition=0, offset=n, key=None, value=value)
        for n, value in enumerate(values)
    ]
    async with unit_of_work(sessions) as session:
        outputs = list(await router(messages, session))
    return outputs + await release_settled(router, sessions)


def decided(outputs: list[Output]) -> list[RoutingDecision]:
    return decisions_in(outputs)


async def age(db: asyncpg.Connection, leads: list[str], days: float) -> None:
    """Make the leads' decisions, suppressions and breaches `days` older than they are."""
    shift = timedelta(days=days)
    await db.execute(
        "UPDATE router.decisions SET decided_at = decided_at - $2::interval,"
        " sla_due_at = sla_due_at - $2::interval WHERE lead_id = ANY($1::text[])",
        leads,
        shift,
    )
    await db.execute(
        "UPDATE router.suppressions SET recorded_at = recorded_at - $2::interval"
        " WHERE lead_id = ANY($1::text[])",
        leads,
        shift,
    )


async def add_simulation(db: asyncpg.Connection, *, days_ago: float, lead: str, email: str) -> None:
    await db.execute(
        "INSERT INTO router.simulations (id, kind, status, requested_by, started_at, result)"
        " VALUES (gen_random_uuid(), 'routing', 'done', 'rev-ops', now() - $1 * interval '1 day',"
        " $2::jsonb)",
        days_ago,
        json_document(
            {"replayed": 1, "owner_changes": 1, "changes": [
                {"lead_id": lead, "email": email, "decided_at": "2026-01-01T00:00:00+00:00",
                 "live": {"owner": "rep-a"}, "draft": {"owner": "rep-b"}}]}
        ),
    )  # fmt: skip


async def breach(
    sessions: async_sessionmaker[AsyncSession],
    router: RouterHandler,
    db: asyncpg.Connection,
    lead: str,
) -> list[RoutingDecision]:
    """Make the lead's open sdr decision due and check it (a breach, then a reassignment)."""
    decision_id = await db.fetchval(
        "UPDATE router.decisions SET sla_due_at = now() - interval '1 minute'"
        " WHERE lead_id = $1 AND route = 'sdr' AND closed_at IS NULL RETURNING decision_id",
        lead,
    )
    assert decision_id is not None
    command = RouterCommand(command_id=f"sla:{decision_id}", kind="sla_check", lead_id=lead,
                            decision_id=decision_id, at=datetime.now(UTC))  # fmt: skip
    return decided(await handle(sessions, router, command))


async def ada_and_bob(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    """Ada's four leads decided 91 days ago (with a breach and a reassignment), Bob 89 days ago
    and today; a simulation of 100 days ago listing Ada, one of 10 days ago listing Bob."""
    listed = Consent(email_opt_out=True, suppressed=True,
                     reasons=[f"suppression list: {ADA_EMAIL} (asked in person)"])  # fmt: skip
    first = await handle(
        sessions,
        router,
        change(ADA, Stage.MQL, reason="crm: call her after 5pm"),
        change(ADA_NURTURE, Stage.LEAD),
        change(ADA_LISTED, Stage.MQL, consent=listed),
        change(ADA_DISQUALIFIED, Stage.DISQUALIFIED, reason="crm: Augusta Lovelace is a student"),
        change(BOB, Stage.MQL),
    )
    assert {d.lead_id for d in decided(first)} == {ADA, ADA_NURTURE, BOB}
    assert [d.strategy for d in await breach(sessions, router, db, ADA)] == ["sla_reassigned"]
    await age(db, ADA_LEADS, PAST)
    await age(db, [BOB], 89)
    assert decided(await handle(sessions, router, change(BOB_TODAY, Stage.MQL)))
    await add_simulation(db, days_ago=100, lead=ADA, email=ADA_EMAIL)
    await add_simulation(db, days_ago=10, lead=BOB, email=f"{BOB}@example.com")
    # She is everywhere before: payloads, changes, emails, reasons, a simulation's example.
    assert len(await traces_of(db, HER, schemas=["router"])) >= 8


async def rows(db: asyncpg.Connection, table: str, leads: list[str]) -> list[dict[str, Any]]:
    """The leads' rows of a router table, each as a dict, in a fixed order (row version too)."""
    found = await db.fetch(
        f"SELECT xmin::text AS row_version, * FROM router.{table}"  # literal table names
        " WHERE lead_id = ANY($1::text[]) ORDER BY transition_id, 3",
        leads,
    )
    return [dict(row) for row in found]


async def round_(sessions: async_sessionmaker[AsyncSession], **days: float) -> Any:
    return await housekeeping_round(
        sessions,
        payload_retention_days=days.get("payload", 90),
        erased_leads_retention_days=days.get("erased", 45),
    )


# ---- what is scrubbed, what is not ------------------------------------------------------------


def test_every_field_of_a_decision_is_either_kept_or_emptied() -> None:
    """A field added to the contract must be classified here before it is stored past the
    retention unseen (a new field kept by default could name the lead)."""
    fields = set(RoutingDecision.model_fields)
    assert set(KEPT_PAYLOAD_FIELDS) | set(EMPTIED_PAYLOAD_FIELDS) == fields
    assert not set(KEPT_PAYLOAD_FIELDS) & set(EMPTIED_PAYLOAD_FIELDS)


async def test_past_the_retention_decisions_suppressions_and_simulations_are_scrubbed_and_kept(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_and_bob(sessions, router, db)
    bobs = [BOB, BOB_TODAY]
    before = {table: await rows(db, table, bobs) for table in ("decisions", "suppressions")}
    counts = {
        table: await db.fetchval(f"SELECT count(*) FROM router.{table}")  # literal names
        for table in ("decisions", "suppressions", "sla_breaches", "simulations")
    }
    loads = await db.fetch("SELECT * FROM router.rep_loads ORDER BY rep_id, day")
    payloads = {d["decision_id"]: json.loads(d["payload"]) for d in await rows(
        db, "decisions", ADA_LEADS)}  # fmt: skip

    done = await round_(sessions)

    # Ada: her sdr decision and its reassignment, her nurture decision; two suppressions; the
    # simulation of 100 days ago.
    assert (done.decisions, done.suppressions, done.simulations) == (3, 2, 1)
    assert await traces_of(db, HER, schemas=["router"]) == []
    decisions = await rows(db, "decisions", ADA_LEADS)
    assert len(decisions) == 3, "the rows stay"
    for decision in decisions:
        assert (decision["email"], decision["change"]) == (None, None)
        assert decision["scrubbed_at"] is not None
        payload = json.loads(decision["payload"])
        was = payloads[decision["decision_id"]]
        assert payload == {
            **{key: value for key, value in was.items() if key in KEPT_PAYLOAD_FIELDS},
            **EMPTIED_PAYLOAD_FIELDS,
        }
        assert payload["decided_at"] == was["decided_at"]
        kept = RoutingDecision.model_validate(payload)  # still a decision
        assert (kept.lead_id, kept.route) == (decision["lead_id"], decision["route"])
        assert (kept.score.priority, kept.routing_version) == ("A1", "test-retention")
        if kept.route == "sdr":
            assert kept.owner is not None, "who had the lead stays: per-rep history is true"
    reassigned = [d for d in decisions if d["supersedes"]]
    assert [d["strategy"] for d in reassigned] == ["sla_reassigned"]
    suppressions = await rows(db, "suppressions", ADA_LEADS)
    assert sorted((s["stage"], s["reason"], s["email"]) for s in suppressions) == [
        ("disqualified", "disqualified", None),
        ("mql", "opted out", None),
    ]
    # Bob, 89 days and today: untouched, row versions included.
    assert {t: await rows(db, t, bobs) for t in ("decisions", "suppressions")} == before
    assert [await db.fetchval(f"SELECT count(*) FROM router.{t}") for t in counts] == list(
        counts.values()
    )
    assert await db.fetch("SELECT * FROM router.rep_loads ORDER BY rep_id, day") == loads
    results = await db.fetch("SELECT result FROM router.simulations ORDER BY started_at")
    old, recent = (json.loads(r["result"]) for r in results)
    assert old["changes"][0] == {"lead_id": ADA, "email": None, "live": {"owner": "rep-a"},
                                 "draft": {"owner": "rep-b"},
                                 "decided_at": "2026-01-01T00:00:00+00:00"}  # fmt: skip
    assert recent["changes"][0]["email"] == f"{BOB}@example.com"


async def test_scrubbed_rows_are_not_written_again_by_the_next_round(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_and_bob(sessions, router, db)
    await round_(sessions)
    everyone = [*ADA_LEADS, BOB, BOB_TODAY]
    after_first = {t: await rows(db, t, everyone) for t in ("decisions", "suppressions")}
    simulations = await db.fetch("SELECT xmin::text, * FROM router.simulations ORDER BY id")

    again = await round_(sessions)

    assert (again.decisions, again.suppressions, again.simulations) == (0, 0, 0)
    assert {t: await rows(db, t, everyone) for t in ("decisions", "suppressions")} == after_first
    assert await db.fetch("SELECT xmin::text, * FROM router.simulations ORDER BY id") == (
        simulations
    )


async def test_a_decision_within_the_retention_is_scrubbed_once_it_is_past_it(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_and_bob(sessions, router, db)
    await round_(sessions)
    await age(db, [BOB], 2)  # 89 days, now 91

    done = await round_(sessions)

    assert (done.decisions, done.suppressions) == (1, 0)
    [bob] = await rows(db, "decisions", [BOB])
    assert (bob["email"], bob["change"], bob["scrubbed_at"] is not None) == (None, None, True)
    assert await traces_of(db, [f"{BOB}@example.com"], schemas=["router"]) == [
        "router.simulations.result: lead-bob@example.com"  # the simulation of 10 days ago
    ]


# ---- by index, bounded, one replica, never waiting for the consumer -----------------------------

SCRUBS = {
    "decisions": (SCRUB_DECISIONS, "decisions_unscrubbed_idx"),
    "suppressions": (SCRUB_SUPPRESSIONS, "suppressions_unscrubbed_idx"),
    "simulations": (SCRUB_SIMULATIONS, "simulations_named_examples_idx"),
}


def scrub_args(store: str) -> tuple[Any, ...]:
    args: tuple[Any, ...] = (90 * DAY_S, 2000)
    if store == "decisions":
        args += (list(KEPT_PAYLOAD_FIELDS), orjson.dumps(EMPTIED_PAYLOAD_FIELDS).decode())
    return args


async def many_rows(db: asyncpg.Connection) -> None:
    """A year of decisions, suppressions and simulations (20,000, 20,000 and 2,000), evenly
    spread: 15,068, 15,068 and 1,506 of them older than 90 days."""
    await db.execute(
        """
        INSERT INTO router.decisions (decision_id, transition_id, lead_id, route, track,
                                      decided_at, payload, email, change, routing_version)
        SELECT 'd-' || n, 't-' || n, 'lead-' || n, 'nurture', 'general-nurture',
               now() - (365 - n * 365.0 / 20000) * interval '1 day',
               jsonb_build_object('decision_id', 'd-' || n, 'email', 'p' || n || '@example.com',
                                  'name', 'Person ' || n, 'padding', repeat('x', 300)),
               'p' || n || '@example.com', jsonb_build_object('lead_id', 'lead-' || n), '1'
          FROM generate_series(1, 20000) AS n
        """
    )
    await db.execute(
        """
        INSERT INTO router.suppressions (transition_id, lead_id, stage, reason, email, recorded_at)
        SELECT 's-' || n, 'lead-' || n, 'mql', 'opted out', 'p' || n || '@example.com',
               now() - (365 - n * 365.0 / 20000) * interval '1 day'
          FROM generate_series(1, 20000) AS n
        """
    )
    await db.execute(
        """
        INSERT INTO router.simulations (id, kind, status, requested_by, started_at, result)
        SELECT gen_random_uuid(), 'routing', 'done', 'rev-ops',
               now() - (365 - n * 365.0 / 2000) * interval '1 day',
               jsonb_build_object('changes', jsonb_build_array(jsonb_build_object(
                   'lead_id', 'lead-' || n, 'email', 'p' || n || '@example.com')),
                   'padding', repeat('x', 300))
          FROM generate_series(1, 2000) AS n
        """
    )
    for table in ("decisions", "suppressions", "simulations"):
        await db.execute(f"ANALYZE router.{table}")  # literal names


def scans(plan: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(node type, relation, index) of every scan in a JSON plan."""
    found = []
    if "Scan" in plan["Node Type"]:
        found.append((plan["Node Type"], plan.get("Relation Name"), plan.get("Index Name")))
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


async def explained(db: asyncpg.Connection, store: str, *, analyze: bool) -> dict[str, Any]:
    statement, _ = SCRUBS[store]
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    transaction = db.transaction()
    await transaction.start()
    try:  # EXPLAIN ANALYZE runs the statement: rolled back
        found = await db.fetchval(f"EXPLAIN ({options}) {statement}", *scrub_args(store))
    finally:
        await transaction.rollback()
    plan: dict[str, Any] = json.loads(found)[0]
    return plan


@pytest.mark.parametrize("store", list(SCRUBS))
async def test_a_scrub_reads_its_rows_by_the_partial_index_and_never_scrubbed_ones_again(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection, store: str
) -> None:
    await many_rows(db)
    _, index = SCRUBS[store]

    plan = await explained(db, store, analyze=False)

    found = scans(plan["Plan"])
    assert index in {name for _, _, name in found}, found
    assert not [scan for scan in found if scan[0] == "Seq Scan"], found

    done = await round_(sessions)
    assert getattr(done, store) == {"simulations": 1506, "suppressions": 15068,
                                    "decisions": 15068}[store]  # fmt: skip
    await db.execute(f"VACUUM router.{store}")  # as autovacuum would after the round
    table_pages = await db.fetchval(
        "SELECT pg_relation_size(to_regclass($1)) / current_setting('block_size')::int",
        f"router.{store}",
    )
    plan = await explained(db, store, analyze=True)
    # Nothing left to scrub, and finding that out reads a few pages of the index, not the
    # scrubbed rows (about three quarters of the table) nor the table.
    assert plan["Plan"]["Actual Rows"] == 0
    pages = plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"]
    assert pages <= 10 < table_pages / 10, (pages, table_pages)


async def test_a_scrub_statement_handles_at_most_its_batch_and_a_round_does_them_all(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await many_rows(db)
    statements: list[int] = []

    async def counted(session: AsyncSession, sql: str, *args: Any) -> int:
        handled = await execute(session, sql, *args)
        if sql == SCRUB_DECISIONS:
            statements.append(handled)
        return handled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(housekeeping_module, "execute", counted)
        done = await housekeeping_round(
            sessions, payload_retention_days=90, erased_leads_retention_days=45, batch=4000
        )

    assert done.decisions == 15068
    assert statements == [4000, 4000, 4000, 3068]


async def test_one_replica_at_a_time(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_and_bob(sessions, router, db)
    await db.execute("SELECT pg_advisory_lock($1, $2)", *HOUSEKEEPING_LOCK)  # another replica

    done = await round_(sessions)

    assert (done.skipped, done.decisions, done.suppressions, done.simulations) == (True, 0, 0, 0)
    assert len(await traces_of(db, HER, schemas=["router"])) >= 8
    await db.execute("SELECT pg_advisory_unlock($1, $2)", *HOUSEKEEPING_LOCK)
    assert (await round_(sessions)).decisions == 3


async def test_a_round_never_waits_for_a_row_the_consumer_holds(
    sessions: async_sessionmaker[AsyncSession],
    router: RouterHandler,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    await ada_and_bob(sessions, router, db)
    consumer = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        held = consumer.transaction()
        await held.start()
        await consumer.execute(  # as a batch closing the lead's open decisions holds it
            "SELECT 1 FROM router.decisions WHERE lead_id = $1 FOR UPDATE", ADA_NURTURE
        )
        done = await asyncio.wait_for(round_(sessions), timeout=10)
        assert done.decisions == 2, "the row held is left to the next round"
        await held.rollback()
    finally:
        await consumer.close()
    assert (await round_(sessions)).decisions == 1
    assert await traces_of(db, HER, schemas=["router"]) == []


# ---- the erased leads' records ----------------------------------------------------------------


async def test_the_erased_leads_records_are_forgotten_after_their_retention(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> None:
    await db.executemany(
        "INSERT INTO router.erased_leads (lead_digest, erased_at)"
        " VALUES ($1, now() - $2 * interval '1 day')",
        [(lead_id_digest("erased-44"), 44.0), (lead_id_digest("erased-46"), 46.0)],
    )

    done = await round_(sessions)

    assert done.erased_leads == 1
    kept = await db.fetch("SELECT lead_digest FROM router.erased_leads")
    assert [bytes(row["lead_digest"]) for row in kept] == [lead_id_digest("erased-44")]


async def test_the_companion_round_reads_its_retentions_from_the_settings(
    sessions: async_sessionmaker[AsyncSession],
    router: RouterHandler,
    db: asyncpg.Connection,
    database_url: str,
) -> None:
    await ada_and_bob(sessions, router, db)
    await db.execute(
        "INSERT INTO router.erased_leads (lead_digest, erased_at)"
        " VALUES ($1, now() - interval '40 days')",
        lead_id_digest("erased-40"),
    )
    settings = RouterSettings(
        database=DatabaseSettings(url=SecretStr(database_url)),
        decision_payload_retention_days=95,
        erased_leads_retention_days=35,
    )

    done = await housekeeping(sessions=sessions, settings=settings)

    assert (done.decisions, done.erased_leads) == (0, 1)  # Ada is 91 days old: kept 95
    defaults = RouterSettings(database=DatabaseSettings(url=SecretStr(database_url)))
    assert (defaults.decision_payload_retention_days, defaults.erased_leads_retention_days,
            defaults.housekeeping_interval_s) == (90, 45, 3600)  # fmt: skip
    # Never shorter than a simulation's window (30 days) or a topic's retention (31 days).
    database = DatabaseSettings(url=SecretStr(database_url))
    with pytest.raises(ValidationError, match="decision_payload_retention_days"):
        RouterSettings(database=database, decision_payload_retention_days=30)
    with pytest.raises(ValidationError, match="erased_leads_retention_days"):
        RouterSettings(database=database, erased_leads_retention_days=30)


# ---- what reads decisions, on scrubbed ones --------------------------------------------------


async def test_the_routing_history_answers_for_a_lead_with_scrubbed_decisions(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    await ada_and_bob(sessions, router, db)
    await round_(sessions)
    app = create_api(title="leadflow router test", summary="routing history")
    serve_clients(app, CLIENTS)
    simulations = Simulations(schema="router", sessions=sessions)
    for routes in router_api(sessions, routing=routing_versions(), simulations=simulations):
        app.include_router(routes)
    headers = {"Authorization": f"Bearer {CRM_TOKEN}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.get(f"/v1/leads/{ADA}/routing", headers=headers)
        by_email = await client.get(f"/v1/leads/{ADA_EMAIL}/routing", headers=headers)
        bob = await client.get(f"/v1/leads/{BOB}@example.com/routing", headers=headers)
    await simulations.close()

    assert answer.status_code == 200, answer.text
    history = answer.json()
    first, reassigned = history["decisions"]
    assert [(d["route"], d["strategy"]) for d in (first, reassigned)] == [
        ("sdr", "round_robin"), ("sdr", "sla_reassigned")]  # fmt: skip
    assert first["owner"]["id"] != reassigned["owner"]["id"], "per-rep history stays"
    for decision in history["decisions"]:
        assert (decision["email"], decision["name"], decision["company"]) == (None, None, None)
        assert (decision["reasons"], decision["score"]["priority"]) == ([], "A1")
        assert decision["scrubbed_at"] is not None
        assert decision["decided_at"] is not None
    assert [b["owner_id"] for b in history["sla_breaches"]] == [first["owner"]["id"]]
    assert not any(value in answer.text for value in HER)
    assert by_email.status_code == 404, "after the retention a lead is found by its id alone"
    assert bob.status_code == 200
    assert bob.json()["decisions"][0]["scrubbed_at"] is None
    text = render_history(history)  # the CLI's `history`
    assert text.startswith(f"lead {ADA}\npersonal data removed past retention: 2 decisions\n")
    assert f"{reassigned['owner']['name']} (sdr)" in text
    assert not any(value in text for value in HER)


async def test_an_open_decision_scrubbed_is_still_checked_closed_and_superseded(
    sessions: async_sessionmaker[AsyncSession], router: RouterHandler, db: asyncpg.Connection
) -> None:
    """Its SLA check parses the scrubbed payload and reassigns; CRM feedback naming the lead id
    closes a decision; the lead's next stage change closes its nurture decision."""
    carol, dan = "lead-carol", "lead-dan"
    await handle(sessions, router, change(carol, Stage.MQL), change(dan, Stage.MQL))
    await handle(sessions, router, change(ADA_NURTURE, Stage.LEAD))
    await age(db, [carol, dan, ADA_NURTURE], PAST)
    assert (await round_(sessions)).decisions == 3

    [reassigned] = await breach(sessions, router, db, carol)
    feedback = CrmFeedback(feedback_id="f-1", lead_id=dan, outcome="accepted",
                           at=datetime.now(UTC))  # fmt: skip
    await handle(sessions, router, feedback)
    [now_sdr] = decided(await handle(sessions, router, change(ADA_NURTURE, Stage.MQL, "2")))

    assert (reassigned.strategy, reassigned.lead_id) == ("sla_reassigned", carol)
    assert (reassigned.email, reassigned.name, reassigned.company) == (None, None, None)
    assert reassigned.score.priority == "A1"
    closed = await db.fetch(
        "SELECT lead_id, closed_reason FROM router.decisions WHERE scrubbed_at IS NOT NULL"
        " ORDER BY lead_id"
    )
    assert [(row["lead_id"], row["closed_reason"]) for row in closed] == [
        (ADA_NURTURE, "lead changed stage"),
        (carol, "SLA breached: sla_reassigned"),
        (dan, "crm: accepted"),
    ]
    assert now_sdr.email == ADA_EMAIL, "a new decision carries the lead as it is now"


async def test_simulations_replay_what_is_left_and_skip_scrubbed_decisions(
    sessions: async_sessionmaker[AsyncSession],
    router: RouterHandler,
    config: RoutingConfig,
    db: asyncpg.Connection,
) -> None:
    """No decision of a simulation's 30 days is ever scrubbed with the settings allowed (at
    least 31 days); one scrubbed all the same (a retention of 10 days, asked of the round
    itself) is skipped and counted, as decisions made before the router kept changes are."""
    leads = [f"lead-sim-{n}" for n in range(3)]
    await handle(sessions, router, *(change(lead, Stage.MQL) for lead in leads))
    await handle(sessions, router, change("lead-sim-old", Stage.MQL))
    await age(db, leads[:1], 20)
    await age(db, ["lead-sim-old"], PAST)
    assert (await round_(sessions)).decisions == 1  # the 91-day one only

    simulations = Simulations(schema="router", sessions=sessions)
    progress = Progress(simulations, str(uuid.uuid4()))
    result = await simulate_draft(config, progress, sessions=sessions, routing=pinned(config))
    assert (result["replayed"], result["skipped_without_change"]) == (3, 0)

    assert (await round_(sessions, payload=10)).decisions == 1
    result = await simulate_draft(config, progress, sessions=sessions, routing=pinned(config))
    assert (result["replayed"], result["skipped_without_change"], result["unreadable"]) == (
        2, 1, 0)  # fmt: skip
    await simulations.close()
