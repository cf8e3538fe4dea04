"""A routing simulation's I/O: the work `shared.simulations` runs in the background when someone
simulates a draft (`POST /v1/routing/simulations`, `shared.config_api`).

It reads the stage changes the router stored with its first sdr decisions of the last
`WINDOW` (the newest `AT_MOST` of them), oldest first, by keyset in chunks of `CHUNK` (one chunk
in memory at a time, each read in a short transaction of its own), and replays each chunk
through the live routing and the draft (`simulation.Replay`) in a worker thread, so the replica
keeps consuming and answering probes. Between chunks it reports progress (and learns of a
cancel). Decisions made before the router kept the changes are counted, not replayed
(`skipped_without_change`); a stored change this version cannot read is counted too
(`unreadable`). The live routing is the one live when the simulation starts. Decisions of one
batch share their instant (`decided_at`): they are replayed in decision id order, the same for
both routings (the batch's message order is not stored).

Erasure: a simulation reads changes in short transactions of their own, so a lead it listed
among its examples may be erased while it runs; the result is returned without the examples
of leads erased by then (`ErasedLeads.among`, one query), and an erasure takes the leads out of
the results already stored (`repository.erase_leads`). Left open: an erasure that commits
between that query and `shared.simulations` storing the result (a few milliseconds).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.repository import StoredChange
from services.router.routing_config import RoutingConfig
from services.router.routing_versions import live_routing
from services.router.simulation import DecidedChange, Replay
from shared.config_versions import LiveSource
from shared.contracts import LifecycleChanged
from shared.simulations import Progress

WINDOW = timedelta(days=30)
"""How far back a simulation looks: a month of MQLs, the period RevOps plans a change over."""
AT_MOST = 20_000
"""The most changes a simulation replays (the newest): a few minutes of CPU at most."""
CHUNK = 1_000
"""Changes read, and replayed in one go in the worker thread, between two progress reports."""


async def simulate_draft(
    draft: RoutingConfig,
    progress: Progress,
    *,
    sessions: async_sessionmaker[AsyncSession],
    routing: LiveSource[RoutingConfig],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Replay the recent MQLs through the live routing and `draft` (see the module doc) and
    return the result: `Replay.result`'s counts and examples, with the live version, the
    window, `skipped_without_change`, `unreadable` and `limited` (more changes than `AT_MOST`
    in the window: the oldest were left out). Raises `Cancelled` (from `progress.update`) when
    someone cancels it."""
    until = now or datetime.now(UTC)
    since = until - WINDOW
    async with sessions() as session:
        live_version, live = await live_routing(routing, session)
        window = await repository.find_replay_window(
            session, since=since, until=until, at_most=AT_MOST
        )
    replay = Replay(live=live, draft=draft)
    total = window.replayable
    after, done, unreadable = window.after, 0, 0
    await progress.update(done=0, total=total, force=True)
    while done < total:
        async with sessions() as session:
            chunk = await repository.read_decided_changes(
                session, after=after, until=until, limit=min(CHUNK, total - done)
            )
        if not chunk:
            break
        after = (chunk[-1].decided_at, chunk[-1].decision_id)
        unreadable += await asyncio.to_thread(_replay_chunk, replay, chunk)
        done += len(chunk)
        await progress.update(done=done, total=total)
    await progress.update(done=done, total=total, force=True)
    result = replay.result()
    listed = [example["lead_id"] for example in result["changes"]]
    if listed:
        async with sessions() as session:
            erased = await repository.ERASED_LEADS.among(session, listed)
        result["changes"] = [e for e in result["changes"] if e["lead_id"] not in erased]
    return {
        "live_version": live_version,
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "limited": window.limited,
        **result,
        "skipped_without_change": window.without_change,
        "unreadable": unreadable,
    }


def _replay_chunk(replay: Replay, chunk: list[StoredChange]) -> int:
    """Parse and replay one chunk (in the worker thread); returns how many could not be read."""
    readable: list[DecidedChange] = []
    for stored in chunk:
        try:
            change = LifecycleChanged.model_validate(stored.change)
        except ValidationError:
            continue
        readable.append(DecidedChange(change=change, decided_at=stored.decided_at))
    replay.feed(readable)
    return len(chunk) - len(readable)
