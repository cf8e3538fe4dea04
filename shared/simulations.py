"""Simulations that run in the background: one at a time per service, their progress and
result kept in the service's own schema, so any replica can answer for one and cancel it.

A simulation replays stored history through a draft configuration (score: candidate rules
over every lead; router: a draft routing over recent MQLs). Over a large history that takes
minutes, longer than an HTTP request should wait, so a request starts one (`Simulations.start`,
answered 202 with its id) and the caller polls it (`get`) or cancels it (`cancel`).

- **One per service at a time.** A unique index on the running row makes a second start fail
  with `SimulationBusy` (409, naming who runs the first), whichever replica is asked. A
  simulation whose replica stopped without finishing (its heartbeat is older than
  `stale_after_s`) is marked failed by the next start, so it does not block the service forever.
- **Progress and cancellation** go through the row: the running replica writes how far it got
  (`Progress.update`, at most once a second, which is also its heartbeat) and reads there
  whether someone asked it to stop; the next `update` after `cancel` raises `Cancelled`
  inside the work, which ends it as `cancelled`. So a cancel lands within one chunk of work.
- **The work** is a coroutine the caller gives (`Work`): it reads the history in chunks (bounded
  memory: one chunk at a time), runs CPU-bound replay in a worker thread so the replica keeps
  consuming and answering probes, calls `update` between chunks, and returns its result as a
  JSON object (stored as the row's `result`; keep it bounded: counts and the first few items).
- **Outcomes**: `done` with the result, `cancelled`, or `failed` with the error's message (an
  unexpected exception is also logged). The service's shutdown cancels what it runs
  (`close`): those end `failed` ("the service stopped").

`simulations_ddl` is what a service's migration runs to create the table.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config_versions import checked_schema
from shared.db import execute, fetchrow, json_document, unit_of_work

log = logging.getLogger(__name__)

Status = Literal["running", "done", "cancelled", "failed"]

PROGRESS_EVERY_S = 1.0
"""How often at most a running simulation writes its progress (and heartbeat)."""


class SimulationBusy(Exception):
    """Another simulation of the service is running; nothing was started."""

    def __init__(self, running: SimulationState) -> None:
        super().__init__(
            f"a simulation is already running (started by {running.requested_by} at "
            f"{running.started_at:%H:%M:%S} UTC, {running.done} of {running.total or '?'} "
            "done); wait for it or cancel it"
        )
        self.running = running


class Cancelled(Exception):
    """Raised inside a simulation's work by `Progress.update` once a cancel was asked."""


@dataclass(frozen=True)
class SimulationState:
    """A simulation as its row says: `done` of `total` (None: not known yet) units of work."""

    id: str
    kind: str
    status: Status
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    done: int
    total: int | None
    cancel_requested: bool
    result: dict[str, Any] | None
    error: str | None

    def view(self) -> dict[str, Any]:
        """The JSON an API answers with."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "requested_by": self.requested_by,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "progress": {"done": self.done, "total": self.total},
            "cancel_requested": self.cancel_requested,
            "result": self.result,
            "error": self.error,
        }


class Progress:
    """What a simulation's work reports through; see the module doc."""

    def __init__(self, simulations: Simulations, simulation_id: str) -> None:
        self._simulations = simulations
        self._id = simulation_id
        self._written_at = 0.0

    async def update(self, *, done: int, total: int | None, force: bool = False) -> None:
        """Record how far the work got (at most once a second unless `force`), and raise
        `Cancelled` if someone asked it to stop."""
        now = time.monotonic()
        if not force and now - self._written_at < PROGRESS_EVERY_S:
            return
        self._written_at = now
        if await self._simulations._record_progress(self._id, done=done, total=total):
            raise Cancelled()


Work = Callable[[Progress], Awaitable[dict[str, Any]]]
"""A simulation's work: reads, replays, reports progress, returns its result (a JSON object)."""


class Simulations:
    """The background simulations of one service (its schema); one instance per process."""

    def __init__(
        self,
        *,
        schema: str,
        sessions: async_sessionmaker[AsyncSession],
        stale_after_s: float = 120.0,
    ) -> None:
        self._schema = checked_schema(schema)
        self._sessions = sessions
        self._stale_after_s = stale_after_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, *, kind: str, by: str, work: Work) -> SimulationState:
        """Record a running simulation and start `work` in a task of this process; returns its
        state as recorded. Raises `SimulationBusy` if one is running anywhere (see the module
        doc), and starts nothing."""
        simulation_id = str(uuid.uuid4())
        row = None
        while row is None:  # again only if the running one ended between insert and look
            async with unit_of_work(self._sessions) as session:
                await execute(
                    session,
                    f"""
                    UPDATE "{self._schema}".simulations
                       SET status = 'failed', finished_at = now(),
                           error = 'the replica running it stopped before it finished'
                     WHERE status = 'running'
                       AND heartbeat_at < now() - make_interval(secs => $1)
                    """,
                    self._stale_after_s,
                )
                row = await fetchrow(
                    session,
                    f"""
                    INSERT INTO "{self._schema}".simulations (id, kind, status, requested_by)
                    VALUES ($1, $2, 'running', $3)
                    ON CONFLICT ((true)) WHERE status = 'running' DO NOTHING
                    RETURNING *
                    """,
                    uuid.UUID(simulation_id),
                    kind,
                    by,
                )
                if row is None:
                    running = await fetchrow(
                        session,
                        f"SELECT * FROM \"{self._schema}\".simulations WHERE status = 'running'",
                    )
                    if running is not None:
                        raise SimulationBusy(_state(running))
        task = asyncio.create_task(self._run(simulation_id, work), name=f"simulation {kind}")
        self._tasks[simulation_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(simulation_id, None))
        return _state(row)

    async def get(self, simulation_id: str) -> SimulationState | None:
        """The simulation's state, or None for an unknown (or malformed) id."""
        try:
            key = uuid.UUID(simulation_id)
        except ValueError:
            return None
        async with self._sessions() as session:
            row = await fetchrow(
                session, f'SELECT * FROM "{self._schema}".simulations WHERE id = $1', key
            )
        return None if row is None else _state(row)

    async def latest(self, kind: str) -> SimulationState | None:
        """The kind's most recently started simulation (what a page shows on opening)."""
        async with self._sessions() as session:
            row = await fetchrow(
                session,
                f"""
                SELECT * FROM "{self._schema}".simulations
                 WHERE kind = $1 ORDER BY started_at DESC LIMIT 1
                """,
                kind,
            )
        return None if row is None else _state(row)

    async def cancel(self, simulation_id: str) -> SimulationState | None:
        """Ask a running simulation to stop (it ends `cancelled` at its next progress update,
        on whichever replica runs it). A finished one is returned as it is; None: unknown."""
        try:
            key = uuid.UUID(simulation_id)
        except ValueError:
            return None
        async with unit_of_work(self._sessions) as session:
            row = await fetchrow(
                session,
                f"""
                UPDATE "{self._schema}".simulations
                   SET cancel_requested = cancel_requested OR status = 'running'
                 WHERE id = $1
                RETURNING *
                """,
                key,
            )
        return None if row is None else _state(row)

    async def close(self) -> None:
        """Stop the simulations this process runs (at shutdown); they end `failed`."""
        running = dict(self._tasks)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        if running:
            # A task cancelled before its first step never ran `_run`'s handlers: its row
            # would stay `running` (and block every start) until its heartbeat went stale.
            async with unit_of_work(self._sessions) as session:
                await execute(
                    session,
                    f"""
                    UPDATE "{self._schema}".simulations
                       SET status = 'failed', finished_at = now(),
                           error = 'the service stopped before it finished'
                     WHERE id = ANY($1::uuid[]) AND status = 'running'
                    """,
                    [uuid.UUID(simulation_id) for simulation_id in running],
                )

    async def _run(self, simulation_id: str, work: Work) -> None:
        status: Status
        result: dict[str, Any] | None = None
        error: str | None = None
        try:
            result = await work(Progress(self, simulation_id))
            status = "done"
        except Cancelled:
            status = "cancelled"
        except asyncio.CancelledError:
            status, error = "failed", "the service stopped before it finished"
        except Exception as exc:
            log.exception("simulation %s failed", simulation_id)
            status, error = "failed", str(exc) or type(exc).__name__
        try:
            await asyncio.shield(self._finish(simulation_id, status, result, error))
        except Exception:
            # the row stays 'running' until its heartbeat is stale; the next start clears it
            log.exception("simulation %s: its outcome could not be stored", simulation_id)

    async def _finish(
        self, simulation_id: str, status: Status, result: dict[str, Any] | None, error: str | None
    ) -> None:
        async with unit_of_work(self._sessions) as session:
            await execute(
                session,
                f"""
                UPDATE "{self._schema}".simulations
                   SET status = $2, result = $3::jsonb, error = $4, finished_at = now(),
                       heartbeat_at = now()
                 WHERE id = $1
                """,
                uuid.UUID(simulation_id),
                status,
                None if result is None else json_document(result),
                error,
            )

    async def _record_progress(self, simulation_id: str, *, done: int, total: int | None) -> bool:
        """Write progress and heartbeat; whether a cancel was asked."""
        async with unit_of_work(self._sessions) as session:
            row = await fetchrow(
                session,
                f"""
                UPDATE "{self._schema}".simulations
                   SET done = $2, total = $3, heartbeat_at = now()
                 WHERE id = $1
                RETURNING cancel_requested
                """,
                uuid.UUID(simulation_id),
                done,
                total,
            )
        return row is not None and bool(row["cancel_requested"])


def simulations_ddl(schema: str) -> list[str]:
    """The statements a service's migration runs, each with `op.execute`, for `Simulations`:
    one row per simulation; at most one `running` (a unique partial index)."""
    schema = checked_schema(schema)
    return [
        f"""
        CREATE TABLE "{schema}".simulations (
            id uuid PRIMARY KEY,
            kind text NOT NULL,
            status text NOT NULL
                CHECK (status IN ('running', 'done', 'cancelled', 'failed')),
            requested_by text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            done bigint NOT NULL DEFAULT 0,
            total bigint,
            cancel_requested boolean NOT NULL DEFAULT false,
            result jsonb,
            error text
        )
        """,
        f"""
        CREATE UNIQUE INDEX simulations_one_running ON "{schema}".simulations ((true))
         WHERE status = 'running'
        """,
        f'CREATE INDEX simulations_by_kind ON "{schema}".simulations (kind, started_at)',
    ]


def _state(row: asyncpg.Record) -> SimulationState:
    return SimulationState(
        id=str(row["id"]),
        kind=row["kind"],
        status=row["status"],
        requested_by=row["requested_by"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        done=row["done"],
        total=row["total"],
        cancel_requested=row["cancel_requested"],
        result=row["result"],
        error=row["error"],
    )
