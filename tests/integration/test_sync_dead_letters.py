"""Content a destination refuses (422) is dead-lettered at once, what keeps failing after
`max_attempts`; `python -m services.sync replay` delivers them once the destination takes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sync import repository
from shared.db import unit_of_work
from shared.topics import LEADS_LIFECYCLE
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.webhooks import (
    Answer,
    Receiver,
    count,
    decision,
    decision_topic,
    polled,
    produce,
    start_sync,
)
from tests.unit.builders import lifecycle_change


async def test_refused_content_is_dead_lettered_and_replay_delivers_it(
    pipeline: Pipeline,
    db: asyncpg.Connection,
    tmp_path: Path,
    receivers: Callable[[], Awaitable[Receiver]],
) -> None:
    strict, flaky = await receivers(), await receivers()
    strict.answer = lambda: Answer(422)
    flaky.answer = lambda: Answer(500)
    await start_sync(pipeline, tmp_path, {
        "strict": (strict, {"max_attempts": 50}),
        "flaky": (flaky, {"max_attempts": 2, "backoff_base_s": 0.1, "backoff_cap_s": 0.2}),
    })  # fmt: skip
    produce(
        pipeline,
        [
            (LEADS_LIFECYCLE, "lead-1", lifecycle_change(lead_id="lead-1", transition_id="t-1")),
            *[(decision_topic("sdr"), "lead-1", decision("lead-1", n)) for n in (1, 2, 3)],
        ],
    )

    def dead(destination: str) -> Callable[[], Awaitable[int]]:
        sql = "SELECT count(*) FROM sync.dead_letters WHERE destination = $1"
        return lambda: count(db, sql, destination)

    await eventually(dead("strict"), "422s dead-lettered", until=lambda n: n == 4, timeout_s=10)
    await eventually(dead("flaky"), "500s dead-lettered after 2 attempts",
                     until=lambda n: n == 4, timeout_s=10)  # fmt: skip
    assert strict.attempts == 4  # at once: never retried
    letters = await db.fetch(
        "SELECT destination, attempts, last_status, last_error FROM sync.dead_letters"
    )
    assert {(r["destination"], r["attempts"], r["last_status"]) for r in letters} == {
        ("strict", 1, 422),
        ("flaky", 2, 500),
    }
    assert all(r["last_error"].endswith('{"error": "nope"}') for r in letters)
    assert await count(db, "SELECT count(*) FROM sync.deliveries") == 0  # the lanes moved on

    shown = json.loads(
        await asyncio.to_thread(pipeline.processes["sync"].run_to_end, "destinations", "--json")
    )
    assert {d["name"]: d["dead_letters"] for d in shown} == {"flaky": 4, "strict": 4}

    # Fixed: replay one event, then the rest.
    strict.answer = Answer
    replay = pipeline.processes["sync"].run_to_end
    await asyncio.to_thread(replay, "replay", "--destination", "strict", "--event-id", "t-1")
    await eventually(polled(lambda: strict.ids()), "the replayed event",
                     until=lambda ids: ids == {"t-1"}, timeout_s=10)  # fmt: skip
    await asyncio.to_thread(replay, "replay", "--destination", "strict", "--all")
    await eventually(polled(lambda: len(strict.delivered)), "every dead letter delivered",
                     until=lambda n: n == 4, timeout_s=10)  # fmt: skip
    decisions = strict.by_lead("routing.decision")["lead-1"]
    assert [e.event["data"]["sequence"] for e in decisions] == [1, 2, 3]
    assert await dead("strict")() == 0
    assert await dead("flaky")() == 4
    with pytest.raises(RuntimeError, match="no dead letters"):
        await asyncio.to_thread(replay, "replay", "--destination", "strict", "--all")


async def test_dead_letters_are_deleted_once_past_their_retention(
    db: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A dead letter holds the event as it was (the lead's email): housekeeping deletes those
    that died more than the retention ago, and keeps the others."""
    for event_id, days_ago in (("old", 31), ("recent", 29)):
        await db.execute(
            "INSERT INTO sync.dead_letters (destination, lead_id, event_id, event_kind, event_at,"
            " data, received_at, created_at, attempts, last_error, dead_at)"
            " VALUES ('crm', 'lead-1', $1, 'decision', now(), '{\"email\": \"ada@example.com\"}',"
            " now(), now(), 3, 'HTTP 500', now() - make_interval(days => $2))",
            event_id,
            days_ago,
        )
    async with unit_of_work(sessions) as session:
        deleted = await repository.forget_old_dead_letters(session, days=30)

    assert deleted == 1
    assert [r["event_id"] for r in await db.fetch("SELECT event_id FROM sync.dead_letters")] == [
        "recent"
    ]
