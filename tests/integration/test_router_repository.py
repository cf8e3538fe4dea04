"""router's batch statements against the real PostgreSQL (no broker): a replayed transition is
found and its lead's decisions left alone, a new one closes its lead's open decisions; CRM
feedback closes a decision once (the first item wins); decisions round-trip through the
multi-row insert; the loads are read after the team locks, and the one-statement batch
(`record_first_decisions`) writes only new transitions; the SLA timer finds its next due check;
a batch of SLA checks breaches, reassigns and escalates each due decision once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.assignment import RepLoad
from services.router.handler import RouterHandler, first_decision_id
from services.router.repository import Feedback, NewDecision, Suppression
from services.router.routing_config import DEFAULT_ROUTING_FILE, load_routing
from services.router.routing_versions import pinned
from shared.consumer import Message
from shared.contracts import Consent, Owner, RouterCommand, RoutingDecision, Score, Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings
from shared.topics import LEADS_LIFECYCLE, ROUTER_COMMANDS
from tests.fixtures.routing import decisions_in
from tests.unit.builders import lifecycle_change, profile

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def decision(decision_id: str, lead_id: str, *, due: timedelta | None = None) -> RoutingDecision:
    sdr = due is not None
    return RoutingDecision(
        decision_id=decision_id,
        transition_id=f"{lead_id}:mql:t",
        lead_id=lead_id,
        route="sdr" if sdr else "nurture",
        email=f"{lead_id}@example.com",
        name="Lee Ray",
        company=None,
        stage=Stage.MQL if sdr else Stage.LEAD,
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority="A1"),
        owner=Owner(id="rep-a", name="Rep A", email="a@example.com", team="sdr") if sdr else None,
        track=None if sdr else "general-nurture",
        strategy="round_robin" if sdr else "nurture_track",
        reasons=["asked for a demo"],
        received_at=NOW,
        decided_at=NOW,
        sla_due_at=NOW + due if due is not None else None,
        speed_to_lead_ms=0,
    )


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    yield create_sessionmaker(engine)
    await engine.dispose()


async def store(sessions: async_sessionmaker[AsyncSession], *rows: NewDecision) -> None:
    async with unit_of_work(sessions) as session:
        await repository.record_batch(
            session, decisions=rows, suppressions=(), assignments=(), at=NOW
        )


async def closed(db: asyncpg.Connection) -> dict[str, str | None]:
    rows = await db.fetch("SELECT decision_id, closed_reason FROM router.decisions")
    return {row["decision_id"]: row["closed_reason"] for row in rows}


async def test_decisions_round_trip_through_the_multi_row_insert(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    sdr = decision("d-sdr", "lead-1", due=timedelta(minutes=5))
    await store(
        sessions,
        NewDecision(decision=sdr, transition_id="lead-1:mql:t", teams=("sdr", "inbound, team")),
        NewDecision(
            decision=decision("d-nurture", "lead-2"),
            transition_id="lead-2:lead:t",
            closed_reason="lead changed stage",
        ),
    )
    rows = {
        r["decision_id"]: r
        for r in await db.fetch(
            "SELECT decision_id, teams, owner_id, next_check_at, closed_at, closed_reason, payload"
            " FROM router.decisions"
        )
    }
    assert rows["d-sdr"]["teams"] == ["sdr", "inbound, team"]
    assert rows["d-sdr"]["owner_id"] == "rep-a"
    assert rows["d-sdr"]["next_check_at"] == sdr.sla_due_at  # an open timer
    assert rows["d-sdr"]["closed_at"] is None
    assert RoutingDecision.model_validate_json(rows["d-sdr"]["payload"]) == sdr
    assert rows["d-nurture"]["teams"] == []
    assert rows["d-nurture"]["closed_reason"] == "lead changed stage"
    assert rows["d-nurture"]["closed_at"] == NOW
    assert rows["d-nurture"]["next_check_at"] is None


async def test_one_statement_writes_suppressions_and_counts_assignments(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    day = NOW.date()
    for _ in range(2):  # a second batch adds to the same rep's day
        async with unit_of_work(sessions) as session:
            await repository.record_batch(
                session,
                decisions=(),
                suppressions=[],
                assignments=[("rep-a", day), ("rep-a", day), ("rep-b", day)],
                at=NOW,
            )
    async with unit_of_work(sessions) as session:
        await repository.record_batch(
            session,
            decisions=(),
            suppressions=[
                Suppression(
                    transition_id="lead-9:known:t",
                    lead_id="lead-9",
                    email=None,
                    stage="known",
                    reason="opted out (unsubscribed)",
                )
            ],
            assignments=[],
            at=NOW,
        )
    loads = await db.fetch("SELECT rep_id, assigned FROM router.rep_loads ORDER BY rep_id")
    assert [(r["rep_id"], r["assigned"]) for r in loads] == [("rep-a", 4), ("rep-b", 2)]
    reason = await db.fetchval("SELECT reason FROM router.suppressions")
    assert reason == "opted out (unsubscribed)"


async def test_a_replay_is_found_and_only_new_transitions_close_their_leads_decisions(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await store(
        sessions,
        NewDecision(decision=decision("d-1", "lead-1"), transition_id="lead-1:lead:t"),
        NewDecision(decision=decision("d-2", "lead-2"), transition_id="lead-2:lead:t"),
        NewDecision(decision=decision("d-3", "lead-3"), transition_id="lead-3:lead:t"),
    )
    await db.execute(
        "INSERT INTO router.suppressions (transition_id, lead_id, reason)"
        " VALUES ('lead-3:known:t', 'lead-3', 'opted out')"
    )
    transitions = [
        ("lead-1:lead:t", "lead-1"),  # a replay: decided
        ("lead-2:mql:t", "lead-2"),  # new: closes lead-2's open decision
        ("lead-3:known:t", "lead-3"),  # a replay of a suppression
    ]
    async with unit_of_work(sessions) as session:
        decided = await repository.start_transitions(
            session, transitions, at=NOW, reason="lead changed stage"
        )
    assert decided == {"lead-1:lead:t", "lead-3:known:t"}
    assert await closed(db) == {"d-1": None, "d-2": "lead changed stage", "d-3": None}


async def test_one_statement_writes_only_new_transitions_and_closes_by_later_fresh_changes(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await store(
        sessions,
        NewDecision(decision=decision("d-old", "lead-1"), transition_id="lead-1:known:t"),
    )
    await db.execute(
        "INSERT INTO router.suppressions (transition_id, lead_id, reason)"
        " VALUES ('lead-3:known:t', 'lead-3', 'opted out')"
    )
    rows = [
        ("d-replay", "lead-1", "lead-1:known:t"),  # d-old's transition again: not written
        ("d-1", "lead-1", "lead-1:lead:t"),  # new: closes d-old
        ("d-2a", "lead-2", "lead-2:known:t"),  # closed at birth: lead-2 changes again below
        ("d-2b", "lead-2", "lead-2:lead:t"),
        ("d-3", "lead-3", "lead-3:lead:t"),  # stays open: the later change is a replay
    ]
    async with unit_of_work(sessions) as session:
        decided = await repository.record_first_decisions(
            session,
            [(t, lead) for _, lead, t in rows]
            + [("lead-3:known:t", "lead-3"), ("lead-4:known:t", "lead-4")],
            decisions=[
                NewDecision(decision=decision(d, lead), transition_id=t) for d, lead, t in rows
            ],
            suppressions=[
                Suppression(
                    transition_id=t, lead_id=lead, email=None, stage="known", reason="opted out"
                )
                for t, lead in [("lead-3:known:t", "lead-3"), ("lead-4:known:t", "lead-4")]
            ],
            at=NOW,
            reason="lead changed stage",
        )
    assert decided == {"lead-1:known:t", "lead-3:known:t"}
    assert await closed(db) == {
        "d-old": "lead changed stage",
        "d-1": None,
        "d-2a": "lead changed stage",
        "d-2b": None,
        "d-3": None,
    }
    suppressed = await db.fetch("SELECT transition_id FROM router.suppressions ORDER BY 1")
    assert [r[0] for r in suppressed] == ["lead-3:known:t", "lead-4:known:t"]
    timers = await db.fetchval("SELECT count(next_check_at) FROM router.decisions")
    assert timers == 0


@pytest.mark.parametrize("start", ["start_batch", "lock_teams_and_read_loads"])
async def test_the_loads_are_read_after_taking_the_team_locks(
    sessions: async_sessionmaker[AsyncSession], start: str
) -> None:
    """The loads are read with a snapshot taken after the locks: an assignment committed by the
    instance that held a team's lock while we waited for it is counted. Both ways a batch
    takes the locks: with its decided check (no SLA check; a replay is found), or after
    locking its checked decisions."""
    await store(
        sessions,
        NewDecision(decision=decision("d-1", "lead-1"), transition_id="lead-1:lead:t"),
    )
    day = NOW.date()
    days = {"rep-a": day, "rep-b": day}
    async with sessions() as holder, sessions() as waiter:
        await holder.begin()
        await repository.lock_teams_and_read_loads(holder, teams=["sdr"], days={})
        await repository.record_batch(
            holder, decisions=(), suppressions=(), assignments=[("rep-a", day)] * 3, at=NOW
        )
        await waiter.begin()

        async def take_the_locks() -> tuple[set[str], dict[str, RepLoad]]:
            if start == "start_batch":
                return await repository.start_batch(
                    waiter,
                    [("lead-1:lead:t", "lead-1"), ("lead-2:mql:t", "lead-2")],
                    at=NOW,
                    reason="lead changed stage",
                    teams=["sdr", "inbound"],
                    days=days,
                )
            loads = await repository.lock_teams_and_read_loads(
                waiter, teams=["sdr", "inbound"], days=days
            )
            return set(), loads

        waiting = asyncio.create_task(take_the_locks())
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the team lock is held by the other instance"
        await holder.commit()
        decided, loads = await asyncio.wait_for(waiting, timeout=5)
        await waiter.commit()
    if start == "start_batch":
        assert decided == {"lead-1:lead:t"}
    assert loads == {"rep-a": RepLoad(assigned_today=3, last_assigned_at=NOW)}


async def test_feedback_closes_each_decision_once_by_lead_or_email(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    due = timedelta(minutes=5)
    await store(
        sessions,
        NewDecision(decision=decision("d-1", "lead-1", due=due), transition_id="lead-1:mql:t"),
        NewDecision(decision=decision("d-2", "lead-2", due=due), transition_id="lead-2:mql:t"),
    )
    late = NOW + timedelta(minutes=9)
    async with unit_of_work(sessions) as session:
        outcomes = await repository.close_on_feedback(
            session,
            [
                Feedback(lead_id="lead-1", email=None, reason="crm: accepted", at=NOW),
                Feedback(lead_id=None, email="LEAD-1@example.com", reason="crm: lost", at=NOW),
                Feedback(lead_id=None, email="Lead-2@Example.com", reason="crm: rejected", at=late),
                Feedback(lead_id="unknown", email=None, reason="crm: won", at=NOW),
            ],
            at=NOW,
        )
    assert sorted(outcomes) == [(NOW + due, NOW), (NOW + due, late)]
    assert await closed(db) == {"d-1": "crm: accepted", "d-2": "crm: rejected"}
    timers = await db.fetchval("SELECT count(next_check_at) FROM router.decisions")
    assert timers == 0, "closed decisions have no SLA timer left"


async def test_the_timer_claims_what_is_due_and_sees_the_next_check(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    await store(
        sessions,
        NewDecision(
            decision=decision("d-due", "lead-1", due=timedelta(minutes=-1)),
            transition_id="lead-1:mql:t",
        ),
        NewDecision(
            decision=decision("d-later", "lead-2", due=timedelta(minutes=20)),
            transition_id="lead-2:mql:t",
        ),
    )
    async with unit_of_work(sessions) as session:
        due = await repository.claim_due_checks(
            session, now=NOW, recheck_at=NOW + timedelta(hours=1), limit=10
        )
        next_due = await repository.next_check_after(session, NOW)
    assert due == [("d-due", "lead-1", "sdr")]
    assert next_due == NOW + timedelta(minutes=20)
    async with unit_of_work(sessions) as session:
        assert await repository.next_check_after(session, NOW + timedelta(hours=2)) is None


async def test_a_nurture_batch_emits_only_its_new_transitions_and_closes_earlier_decisions(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The handler's one-statement path (nurture and suppressions only): a redelivered
    transition emits nothing again, a later change closes its lead's earlier decision, and a
    suppressed lead is recorded, not routed."""
    handler = RouterHandler(
        pinned(load_routing(DEFAULT_ROUTING_FILE)),
        sla_recheck=timedelta(minutes=5),
        backfill_horizon=timedelta(hours=72),
    )

    def change(lead: str, stage: Stage, *, opted_out: bool = False) -> Message[BaseModel]:
        value = lifecycle_change(
            transition_id=f"{lead}:{stage.value}:m",
            lead_id=lead,
            at=datetime.now(UTC),  # live: a change older than the backfill horizon is history
            from_stage=Stage.ANONYMOUS,
            to_stage=stage,
            profile=profile(email=f"{lead}@northwind-logistics.com"),
            consent=Consent(email_opt_out=opted_out),
        )
        return Message(topic=LEADS_LIFECYCLE, partition=0, offset=0, key=None, value=value)

    async def handle(*messages: Message[BaseModel]) -> list[tuple[str | None, int | None]]:
        async with unit_of_work(sessions) as session:
            outputs = await handler(messages, session)
        return [
            (o.value.transition_id, o.value.sequence)
            for o in outputs
            if isinstance(o.value, RoutingDecision) and o.topic.name == "routing.nurture"
        ]

    def release(transition_id: str) -> Message[BaseModel]:
        decision_id = first_decision_id(transition_id)
        command = RouterCommand(command_id=f"release:{decision_id}", kind="nurture_release",
                                lead_id=transition_id.split(":")[0], decision_id=decision_id,
                                at=datetime.now(UTC))  # fmt: skip
        return Message(topic=ROUTER_COMMANDS, partition=0, offset=0, key=None, value=command)

    first = change("lead-1", Stage.KNOWN)
    assert await handle(first, change("lead-2", Stage.LEAD)) == [], "nurture decisions settle"
    emitted = await handle(
        first, change("lead-1", Stage.LEAD), change("lead-3", Stage.KNOWN, opted_out=True)
    )
    assert emitted == [], "the redelivered transition is not decided twice"
    rows = await db.fetch(
        "SELECT transition_id, closed_reason, next_check_at IS NOT NULL, sequence"
        " FROM router.decisions ORDER BY transition_id"
    )
    assert [tuple(r) for r in rows] == [
        ("lead-1:known:m", "lead changed stage", False, None),  # cancelled while it settled
        ("lead-1:lead:m", None, True, None),
        ("lead-2:lead:m", None, True, None),
    ]
    suppressed = await db.fetch("SELECT transition_id, reason FROM router.suppressions")
    assert [r[0] for r in suppressed] == ["lead-3:known:m"]
    assert suppressed[0][1].startswith("opted out")

    # The timer's releases: the settled decisions go out (each its lead's first message), the
    # cancelled one never does, and a release delivered again sends nothing more.
    releases = [release(t) for t in ("lead-1:known:m", "lead-1:lead:m", "lead-2:lead:m")]
    assert await handle(*releases) == [("lead-1:lead:m", 1), ("lead-2:lead:m", 1)]
    assert await handle(*releases) == []
    sent = await db.fetch(
        "SELECT transition_id, sequence, released_at IS NOT NULL, payload ->> 'sequence'"
        " FROM router.decisions WHERE sequence IS NOT NULL ORDER BY transition_id"
    )
    assert [tuple(r) for r in sent] == [
        ("lead-1:lead:m", 1, True, "1"),
        ("lead-2:lead:m", 1, True, "1"),
    ]


async def test_a_batch_of_sla_checks_acts_on_each_due_decision_once(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """The handler's set-based SLA path: in one batch, a due decision is reassigned (a new
    decision supersedes it and it is closed), an escalated one stays with the manager and its
    timer stops, one not due yet and one already closed are left alone; each breach is recorded
    once, and the batch redelivered changes nothing."""
    handler = RouterHandler(
        pinned(load_routing(DEFAULT_ROUTING_FILE)),
        sla_recheck=timedelta(minutes=5),
        backfill_horizon=timedelta(hours=72),
    )
    linus = Owner(id="rep-linus", name="Linus Pauling", email="l@lumenboard.io", team="sdr-inbound")
    manager = Owner(id="mgr-emma", name="Emmy Noether", email="e@lumenboard.io", team="sdr-inbound")

    def open_decision(
        decision_id: str, lead: str, *, due: timedelta, owner: Owner, strategy: str
    ) -> NewDecision:
        made = decision(decision_id, lead, due=due).model_copy(
            update={"owner": owner, "strategy": strategy}
        )
        return NewDecision(decision=made, transition_id=f"{lead}:mql:t", teams=("sdr-inbound",))

    past = timedelta(minutes=-1)
    await store(
        sessions,
        open_decision("d-due", "lead-1", due=past, owner=linus, strategy="round_robin"),
        open_decision("d-esc", "lead-2", due=past, owner=manager, strategy="sla_escalated"),
        open_decision(
            "d-later", "lead-3", due=timedelta(days=3650), owner=linus, strategy="round_robin"
        ),
        open_decision("d-done", "lead-4", due=past, owner=linus, strategy="round_robin"),
    )
    async with unit_of_work(sessions) as session:
        await repository.close_on_feedback(
            session,
            [Feedback(lead_id="lead-4", email=None, reason="crm: accepted", at=NOW)],
            at=NOW,
        )

    def check(decision_id: str, lead: str) -> Message[BaseModel]:
        command = RouterCommand(
            command_id=f"sla:{decision_id}",
            kind="sla_check",
            lead_id=lead,
            decision_id=decision_id,
            at=NOW,
        )
        return Message(topic=ROUTER_COMMANDS, partition=0, offset=0, key=None, value=command)

    checks = [
        check("d-due", "lead-1"),
        check("d-esc", "lead-2"),
        check("d-later", "lead-3"),
        check("d-done", "lead-4"),
        check("d-due", "lead-1"),
        check("d-gone", "lead-9"),
    ]
    async with unit_of_work(sessions) as session:
        outputs = await handler(checks, session)
    emitted = decisions_in(outputs)
    assert [(d.lead_id, d.strategy, d.supersedes) for d in emitted] == [
        ("lead-1", "sla_reassigned", "d-due")
    ]
    assert emitted[0].owner is not None
    assert emitted[0].owner.id == "rep-rosalind", "round robin among those who have not had it"
    rows = {
        r["decision_id"]: (r["closed_reason"], r["next_check_at"])
        for r in await db.fetch(
            "SELECT decision_id, closed_reason, next_check_at FROM router.decisions"
        )
    }
    assert rows["d-due"] == ("SLA breached: sla_reassigned", None)
    assert rows["d-esc"] == (None, None), "escalated: stays with the manager, timer stopped"
    assert rows["d-later"] == (None, NOW + timedelta(days=3650)), "not due: untouched"
    assert rows["d-done"][0] == "crm: accepted"
    assert rows[emitted[0].decision_id] == (None, emitted[0].sla_due_at)
    breaches = await db.fetch("SELECT decision_id, owner_id FROM router.sla_breaches ORDER BY 1")
    assert [(r[0], r[1]) for r in breaches] == [("d-due", "rep-linus"), ("d-esc", "mgr-emma")]

    async with unit_of_work(sessions) as session:
        again = await handler(checks, session)
    assert again == [], "redelivered: the reassigned decision is closed, the escalated one done"
    assert await db.fetchval("SELECT count(*) FROM router.sla_breaches") == 2
    assert await db.fetchval("SELECT count(*) FROM router.decisions") == 5
