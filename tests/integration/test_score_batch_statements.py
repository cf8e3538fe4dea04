"""score's batch statements against the real PostgreSQL: a batch's writes, one statement, take
any subset of their parts, and its reads after the locks (states and scored pairs) come back as
the separate reads give them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import combinations
from typing import Any

import asyncpg
from pydantic import SecretStr

from services.score import repository
from services.score.engine.rescoring import HistoryItem
from services.score.engine.scoring import LedgerLine
from services.score.repository import LeadRow, StageChange
from shared.contracts import Stage
from shared.db import create_engine, create_sessionmaker, unit_of_work
from shared.settings import DatabaseSettings

PARTS = ("ledger", "history", "stage_changes", "leads")
# Every subset of a batch's parts, the empty one included (then no statement at all).
SUBSETS = [frozenset(subset) for n in range(len(PARTS) + 1) for subset in combinations(PARTS, n)]


async def test_store_batch_writes_any_subset_of_its_parts_and_keeps_a_recorded_change(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def change(reason: str) -> StageChange:
        return StageChange("lead-s:mql:m1", "lead-s", Stage.LEAD, Stage.MQL, reason, at)

    async def stored(lead: str) -> dict[str, list[tuple[Any, ...]]]:
        """What the tables hold for `lead`, part by part."""
        queries = {
            "ledger": "SELECT message_id, rule_id, kind, points FROM score.ledger",
            "history": "SELECT message_id, behaviour, profile, facts::text FROM score.history",
            "stage_changes": "SELECT transition_id, to_stage, reason FROM score.stage_changes",
            "leads": "SELECT stage, fit, total, profile::text FROM score.leads",
        }
        return {
            part: [tuple(r) for r in await db.fetch(query + " WHERE lead_id = $1", lead)]
            for part, query in queries.items()
        }

    def demo_line(message: str) -> LedgerLine:
        return LedgerLine(message, "demo", "intent", "behaviour", 60, 60, "r", "", "v1", at)

    assert len(SUBSETS) == 2 ** len(PARTS)
    try:
        for n, subset in enumerate(SUBSETS):
            lead, message = f"lead-{n}", f"m-{n}"
            parts: dict[str, list[Any]] = {
                "ledger": [(lead, demo_line(message))],
                "history": [(lead, HistoryItem(message, at, {"event": "Demo Requested"}, True))],
                "stage_changes": [
                    StageChange(f"{lead}:mql:{message}", lead, Stage.LEAD, Stage.MQL, "demo", at)
                ],
                "leads": [LeadRow(lead_id=lead, stage=Stage.MQL, fit=30, total=90)],
            }
            async with unit_of_work(sessions) as session:
                await repository.store_batch(
                    session,
                    ledger=parts["ledger"] if "ledger" in subset else [],
                    history=parts["history"] if "history" in subset else [],
                    stage_changes=parts["stage_changes"] if "stage_changes" in subset else [],
                    leads=parts["leads"] if "leads" in subset else [],
                )
            expected = {
                "ledger": [(message, "demo", "behaviour", 60)],
                "history": [(message, True, True, '{"event": "Demo Requested"}')],
                "stage_changes": [(f"{lead}:mql:{message}", "mql", "demo")],
                "leads": [("mql", 30, 90, "{}")],
            }
            assert await stored(lead) == {
                part: expected[part] if part in subset else [] for part in PARTS
            }, sorted(subset)

        for reason in ("first", "replayed"):  # the second write of a transition changes nothing
            async with unit_of_work(sessions) as session:
                await repository.store_batch(
                    session, ledger=[], history=[], stage_changes=[change(reason)], leads=[]
                )
        rows = await db.fetch(
            "SELECT to_stage, reason FROM score.stage_changes WHERE lead_id = 'lead-s'"
        )
        assert [tuple(r) for r in rows] == [("mql", "first")]
    finally:
        await engine.dispose()


async def test_states_and_scored_pairs_read_together_as_apart(
    database_url: str, db: asyncpg.Connection
) -> None:
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def line(lead: str, message: str, rule: str, kind: str, points: int) -> tuple[str, LedgerLine]:
        return lead, LedgerLine(message, rule, "g", kind, points, points, "r", "", "v1", at)

    try:
        async with unit_of_work(sessions) as session:
            await repository.store_batch(
                session,
                ledger=[
                    line("a", "m1", "demo", "behaviour", 30),
                    line("a", "m1", "vp", "fit", 25),
                    line("b", "m2", "demo", "behaviour", 30),
                ],
                history=[
                    ("a", HistoryItem("m1", at, {}, True, True)),
                    ("b", HistoryItem("m2", at, {}, True, True)),
                ],
                stage_changes=[],
                leads=[],
            )
        ids = ["a", "b", "c"]  # c: no ledger, no history
        keys = [("a", "m1"), ("a", "m9"), ("b", "m2"), ("c", "m1"), ("b", "m1")]
        async with unit_of_work(sessions) as session:
            states, scored = await repository.load_states_and_scored(session, ids, keys)
            assert states == await repository.load_states(session, ids)
            assert scored == await repository.already_scored(session, keys)
        assert scored == {("a", "m1"), ("b", "m2")}
        assert states["a"].fit == {"vp": 25}
        assert [award.message_id for award in states["b"].awards] == ["m2"]
        assert states["c"].awards == ()
    finally:
        await engine.dispose()


async def test_ledger_lines_and_history_read_back_as_written(database_url: str) -> None:
    """A ledger line is one type from the engine to the table and back (explanations read it),
    and a history item the same (rescoring and simulations read it)."""
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)), application_name="t")
    sessions = create_sessionmaker(engine)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    capped = LedgerLine(
        message_id="m2", rule_id="demo", group="intent", kind="behaviour", points=10,
        requested=60, reason="asked for a demo", note="capped: 60 asked, 10 left",
        rule_version="v1", event_time=at + timedelta(hours=1),
    )  # fmt: skip
    fit = LedgerLine("m1", "vp", "persona", "fit", 25, 25, "a VP", "", "v1", at)
    history = [
        HistoryItem("m1", at, {"profile.seniority": "vp", "profile.free_mail": False}, False),
        HistoryItem("m2", at + timedelta(hours=1), {"event": "Demo Requested"}, True, False),
    ]
    try:
        async with unit_of_work(sessions) as session:
            await repository.store_batch(
                session,
                ledger=[("a", capped), ("a", fit)],
                history=[("a", item) for item in history],
                stage_changes=[],
                leads=[],
            )
        async with unit_of_work(sessions) as session:
            assert await repository.load_ledgers(session, ["a", "b"]) == {
                "a": [fit, capped],  # in ledger order
                "b": [],
            }
            assert await repository.load_histories(session, ["a", "b"]) == {
                "a": history,
                "b": [],
            }
    finally:
        await engine.dispose()
