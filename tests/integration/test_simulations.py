"""Background simulations (`shared.simulations`) on the real PostgreSQL: one runs to its outcome
in a task while its progress is read from its row, one at a time per service whichever replica
is asked, a cancel lands at the work's next progress update, a failing work and a stopping
service end `failed`, and a simulation whose replica went away stops blocking.

Each test creates a scratch schema with `simulations_ddl` in its own database; a "replica" is a
`Simulations` object of its own. A work waits on events the test sets, so every state is
observed on purpose, not by timing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import shared.simulations
from shared.simulations import (
    Progress,
    SimulationBusy,
    Simulations,
    SimulationState,
    simulations_ddl,
)

SCHEMA = "simulation_test"
WAIT_S = 10.0


@pytest.fixture
async def sessions(
    sessions: async_sessionmaker[AsyncSession], db: asyncpg.Connection
) -> async_sessionmaker[AsyncSession]:
    """The test database's sessions, with the scratch schema created as a migration would."""
    await db.execute(f"CREATE SCHEMA {SCHEMA}")
    for statement in simulations_ddl(SCHEMA):
        await db.execute(statement)
    return sessions


@pytest.fixture
async def replicas(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Callable[..., Simulations]]:
    """Makes replicas (`Simulations` objects); each is closed at the test's end."""
    made: list[Simulations] = []

    def make(**options: Any) -> Simulations:
        made.append(Simulations(schema=SCHEMA, sessions=sessions, **options))
        return made[-1]

    yield make
    for simulations in made:
        await simulations.close()


@pytest.fixture
def every_update_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """No throttling of progress updates: each `update` writes and reads the cancel flag."""
    monkeypatch.setattr(shared.simulations, "PROGRESS_EVERY_S", 0.0)


class Gated:
    """A work that reports `done` of 3, then waits for the test to `release` it, then returns
    its result (or raises `fails_with`)."""

    def __init__(self, result: dict[str, Any] | None = None) -> None:
        self.result = result if result is not None else {"changed": 2, "first": ["lead-1"]}
        self.started = asyncio.Event()
        self.released = asyncio.Event()
        self.fails_with: Exception | None = None

    async def __call__(self, progress: Progress) -> dict[str, Any]:
        await progress.update(done=1, total=3, force=True)
        self.started.set()
        await self.released.wait()
        if self.fails_with is not None:
            raise self.fails_with
        await progress.update(done=3, total=3, force=True)
        return self.result


class Looping:
    """A work that replays chunks until it is cancelled, reporting after each chunk."""

    def __init__(self) -> None:
        self.chunks = 0
        self.started = asyncio.Event()

    async def __call__(self, progress: Progress) -> dict[str, Any]:
        while True:
            self.chunks += 1
            await progress.update(done=self.chunks, total=None)
            self.started.set()
            await asyncio.sleep(0.01)


async def finished(simulations: Simulations, simulation_id: str) -> SimulationState:
    """The simulation's state once it is no longer running."""
    async with asyncio.timeout(WAIT_S):
        while True:
            state = await simulations.get(simulation_id)
            assert state is not None
            if state.status != "running":
                return state
            await asyncio.sleep(0.02)


async def started(work: Gated | Looping) -> None:
    async with asyncio.timeout(WAIT_S):
        await work.started.wait()


# ---- running to an outcome ---------------------------------------------------------------------


async def test_a_simulation_runs_in_the_background_to_done_with_its_result_and_progress_visible(
    replicas: Callable[..., Simulations],
) -> None:
    simulations, other_replica = replicas(), replicas()
    work = Gated()
    state = await simulations.start(kind="rules", by="ada via console", work=work)
    assert (state.status, state.kind, state.requested_by) == ("running", "rules", "ada via console")
    assert (state.done, state.total, state.result, state.error) == (0, None, None, None)
    assert state.finished_at is None
    assert not state.cancel_requested

    await started(work)
    running = await other_replica.get(state.id)  # any replica answers for it
    assert running is not None
    assert (running.status, running.done, running.total) == ("running", 1, 3)

    work.released.set()
    done = await finished(other_replica, state.id)
    assert (done.status, done.result, done.error) == ("done", work.result, None)
    assert (done.done, done.total) == (3, 3)
    assert done.finished_at is not None
    assert done.finished_at >= done.started_at
    assert done.view() == {
        "id": state.id,
        "kind": "rules",
        "status": "done",
        "requested_by": "ada via console",
        "started_at": done.started_at.isoformat(),
        "finished_at": done.finished_at.isoformat(),
        "progress": {"done": 3, "total": 3},
        "cancel_requested": False,
        "result": work.result,
        "error": None,
    }


async def test_a_second_start_while_one_runs_is_refused_on_any_replica_and_starts_nothing(
    replicas: Callable[..., Simulations], db: asyncpg.Connection
) -> None:
    first_replica, second_replica = replicas(), replicas()
    work = Gated()
    first = await first_replica.start(kind="rules", by="ada", work=work)
    await started(work)
    never = Gated()
    for asked in (first_replica, second_replica):  # the same replica / another replica
        for kind in ("rules", "routing"):  # one at a time per service, whatever the kind
            with pytest.raises(SimulationBusy) as busy:
                await asked.start(kind=kind, by="grace", work=never)
            assert busy.value.running.id == first.id
            assert "started by ada" in str(busy.value)
            assert "1 of 3 done" in str(busy.value)
    assert await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 1
    assert not never.started.is_set()

    work.released.set()
    assert (await finished(first_replica, first.id)).status == "done"
    after = Gated()
    second = await second_replica.start(kind="rules", by="grace", work=after)
    after.released.set()
    assert (await finished(first_replica, second.id)).status == "done"


async def test_concurrent_starts_on_several_replicas_start_exactly_one(
    replicas: Callable[..., Simulations], db: asyncpg.Connection
) -> None:
    works = [Gated() for _ in range(4)]

    async def start(work: Gated) -> str | None:
        try:
            return (await replicas().start(kind="rules", by="ada", work=work)).id
        except SimulationBusy:
            return None

    ids = await asyncio.gather(*(start(work) for work in works))
    assert len([i for i in ids if i is not None]) == 1, ids
    assert await db.fetchval(f"SELECT count(*) FROM {SCHEMA}.simulations") == 1
    for work in works:
        work.released.set()


# ---- cancelling --------------------------------------------------------------------------------


@pytest.mark.usefixtures("every_update_written")
async def test_a_cancel_ends_the_work_cancelled_at_its_next_progress_update_on_whichever_replica(
    replicas: Callable[..., Simulations],
) -> None:
    running_replica, asking_replica = replicas(), replicas()
    work = Looping()
    state = await running_replica.start(kind="routing", by="ada", work=work)
    await started(work)

    asked = await asking_replica.cancel(state.id)
    assert asked is not None
    assert (asked.status, asked.cancel_requested) == ("running", True)
    chunks_when_asked = work.chunks
    cancelled = await finished(asking_replica, state.id)
    assert (cancelled.status, cancelled.result, cancelled.error) == ("cancelled", None, None)
    assert work.chunks <= chunks_when_asked + 1, "the work went on after its next update"
    assert cancelled.done >= 1

    # The service is free again.
    again = Gated()
    second = await asking_replica.start(kind="routing", by="grace", work=again)
    again.released.set()
    assert (await finished(asking_replica, second.id)).status == "done"


async def test_a_cancel_is_noticed_only_at_a_written_update_which_is_throttled_unless_forced(
    replicas: Callable[..., Simulations], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared.simulations, "PROGRESS_EVERY_S", 3600.0)
    simulations = replicas()
    reported, cancel_asked = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def work(progress: Progress) -> dict[str, Any]:
        await progress.update(done=1, total=10, force=True)  # written: the throttle starts
        reported.set()
        await cancel_asked.wait()
        await progress.update(done=2, total=10)  # throttled: not written, not checked
        seen.append("throttled update returned")
        await progress.update(done=3, total=10, force=True)  # written and checked
        seen.append("forced update returned")
        return {}

    state = await simulations.start(kind="rules", by="ada", work=work)
    async with asyncio.timeout(WAIT_S):
        await reported.wait()
    await simulations.cancel(state.id)
    cancel_asked.set()
    cancelled = await finished(simulations, state.id)
    assert seen == ["throttled update returned"]
    assert (cancelled.status, cancelled.done) == ("cancelled", 3)


async def test_cancelling_a_finished_simulation_returns_it_as_it_is(
    replicas: Callable[..., Simulations],
) -> None:
    simulations = replicas()
    work = Gated()
    work.released.set()
    state = await simulations.start(kind="rules", by="ada", work=work)
    await finished(simulations, state.id)
    answer = await simulations.cancel(state.id)
    assert answer is not None
    assert (answer.status, answer.cancel_requested, answer.result) == ("done", False, work.result)


# ---- failing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "error"),
    [
        (RuntimeError("the history could not be read"), "the history could not be read"),
        (KeyError("lead-9"), "'lead-9'"),  # the exception's own text
        (ValueError(), "ValueError"),  # no message: its type names it
    ],
)
async def test_a_work_that_raises_ends_failed_with_its_message(
    replicas: Callable[..., Simulations], raised: Exception, error: str
) -> None:
    simulations = replicas()
    work = Gated()
    work.fails_with = raised
    work.released.set()
    state = await simulations.start(kind="rules", by="ada", work=work)
    failed = await finished(simulations, state.id)
    assert (failed.status, failed.error, failed.result) == ("failed", error, None)
    assert failed.finished_at is not None
    # A failed one does not block the next.
    again = Gated()
    again.released.set()
    assert (await finished(simulations, (await simulations.start(
        kind="rules", by="ada", work=again)).id)).status == "done"  # fmt: skip


async def test_closing_a_replica_ends_what_it_runs_failed_and_frees_the_service(
    replicas: Callable[..., Simulations],
) -> None:
    stopping, other_replica = replicas(), replicas()
    work = Gated()
    state = await stopping.start(kind="rules", by="ada", work=work)
    await started(work)
    await stopping.close()
    stopped = await other_replica.get(state.id)
    assert stopped is not None
    assert (stopped.status, stopped.error) == ("failed", "the service stopped before it finished")
    assert stopped.finished_at is not None
    again = Gated()
    again.released.set()
    second = await other_replica.start(kind="rules", by="grace", work=again)
    assert (await finished(other_replica, second.id)).status == "done"


async def test_closing_a_replica_right_after_a_start_ends_that_simulation_failed_too(
    replicas: Callable[..., Simulations],
) -> None:
    """A shutdown that comes as a start is answered, before the work's task first ran."""
    stopping, other_replica = replicas(), replicas()
    state = await stopping.start(kind="rules", by="ada", work=Gated())
    await stopping.close()
    stopped = await other_replica.get(state.id)
    assert stopped is not None
    assert (stopped.status, stopped.error) == ("failed", "the service stopped before it finished")
    again = Gated()
    again.released.set()
    second = await other_replica.start(kind="rules", by="grace", work=again)
    assert (await finished(other_replica, second.id)).status == "done"


# ---- a replica that went away ------------------------------------------------------------------


async def test_a_running_simulation_with_a_stale_heartbeat_no_longer_blocks_and_is_marked_failed(
    replicas: Callable[..., Simulations], db: asyncpg.Connection
) -> None:
    gone, other_replica = replicas(), replicas()
    work = Gated()
    abandoned = await gone.start(kind="rules", by="ada", work=work)
    await started(work)
    # Fresh: it blocks.
    with pytest.raises(SimulationBusy):
        await other_replica.start(kind="rules", by="grace", work=Gated())
    # Its replica stopped writing two hours ago (well past the default 120 s).
    await db.execute(
        f"UPDATE {SCHEMA}.simulations SET heartbeat_at = now() - interval '2 hours' WHERE id = $1",
        uuid.UUID(abandoned.id),
    )
    after = Gated()
    second = await other_replica.start(kind="rules", by="grace", work=after)
    assert second.status == "running"
    assert second.id != abandoned.id
    marked = await other_replica.get(abandoned.id)
    assert marked is not None
    assert (marked.status, marked.error) == (
        "failed",
        "the replica running it stopped before it finished",
    )
    assert marked.finished_at is not None
    after.released.set()
    assert (await finished(other_replica, second.id)).status == "done"


async def test_how_old_a_heartbeat_may_be_is_the_replicas_stale_after_setting(
    replicas: Callable[..., Simulations],
) -> None:
    gone, patient, impatient = replicas(), replicas(), replicas(stale_after_s=0.2)
    work = Gated()
    abandoned = await gone.start(kind="rules", by="ada", work=work)
    await started(work)
    await asyncio.sleep(0.4)
    with pytest.raises(SimulationBusy):  # 0.4 s is not stale after the default 120 s
        await patient.start(kind="rules", by="grace", work=Gated())
    after = Gated()
    second = await impatient.start(kind="rules", by="grace", work=after)
    assert second.id != abandoned.id
    assert (await patient.get(abandoned.id) or second).status == "failed"
    after.released.set()
    await finished(impatient, second.id)


# ---- reading -----------------------------------------------------------------------------------


async def test_latest_is_the_kinds_most_recently_started_simulation(
    replicas: Callable[..., Simulations],
) -> None:
    simulations = replicas()
    assert await simulations.latest("rules") is None
    ids = []
    for kind in ("rules", "rules", "routing"):
        work = Gated()
        work.released.set()
        ids.append((await simulations.start(kind=kind, by="ada", work=work)).id)
        await finished(simulations, ids[-1])
    rules, routing = await simulations.latest("rules"), await replicas().latest("routing")
    assert (rules and rules.id, routing and routing.id) == (ids[1], ids[2])
    assert await simulations.latest("models") is None


UNKNOWN_IDS = [
    str(uuid.uuid4()),  # well formed, unknown
    "",  # empty
    "not-a-uuid",  # malformed
    "1234",  # a number
    "00000000-0000-0000-0000-00000000000g",  # not hex
    "' OR 1=1 --",  # an injection attempt
]


async def test_an_unknown_or_malformed_id_is_none_for_get_and_cancel(
    replicas: Callable[..., Simulations],
) -> None:
    simulations = replicas()
    work = Gated()
    work.released.set()
    known = await simulations.start(kind="rules", by="ada", work=work)  # one row exists
    await finished(simulations, known.id)
    for simulation_id in UNKNOWN_IDS:  # one database for the whole table
        assert await simulations.get(simulation_id) is None, simulation_id
        assert await simulations.cancel(simulation_id) is None, simulation_id
    assert (await simulations.get(known.id) or known).status == "done"
