"""The decision timer: a companion that finds sdr decisions past their `sla_due_at` with no
word from the CRM, and nurture decisions at the end of their settle time (`nurture.settle`),
and asks the router's consumer to act on them (`router.commands` sla_check, nurture_release).
Both wait on the decision's `next_check_at`.

The timer itself changes nothing a CRM sees: the consumer re-checks each decision under its row
lock and does the reassignment exactly once, with the outbox like any other decision. Claiming
moves a decision's `next_check_at` forward (to `sla_recheck_s`), so a check lost with a crash
between the claim and the produce is simply claimed again later; several router instances
claim disjoint decisions (SKIP LOCKED).

How often it looks (the companion's round says when it wants the next one): every
`sla_check_interval_s` at most, and no more often than something can be due. A round also reads
the earliest `next_check_at` still ahead, and a decision made (or a check pushed back) after the
round cannot be due sooner than the shortest SLA window or settle time of the live routing (or
`sla_recheck_s`) after it: the timer sleeps until the nearer of the two. The live routing is
read once per round, in the round's transaction (`routing_versions.live_routing`), so a publication that shortens a
window counts from the next round. An idle router with the default routing file looks every 5
minutes instead of every second, and a due SLA is still claimed at most one check interval late.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.config import RouterSettings
from services.router.routing_config import RoutingConfig
from services.router.routing_versions import live_routing
from shared.commands import CommandSender
from shared.config_versions import LiveSource
from shared.contracts import RouterCommand
from shared.db import unit_of_work
from shared.topics import ROUTER_COMMANDS

log = logging.getLogger(__name__)

_KIND: dict[str, Literal["sla_check", "nurture_release"]] = {
    "sdr": "sla_check",
    "nurture": "nurture_release",
}
"""The command a due decision's timer asks for, by its route."""


@dataclass(frozen=True)
class Round:
    """What one round did: checks requested (acknowledged by the broker), whether it claimed
    as many as one round may (more may be waiting), the earliest check still ahead, and how
    soon after it a check it did not see can fall due (`shortest_wait_for_new_checks` under the
    routing live in the round)."""

    requested: int
    full: bool
    next_due: datetime | None
    horizon: timedelta


async def request_sla_checks(
    *,
    sessions: async_sessionmaker[AsyncSession],
    commands: CommandSender,
    settings: RouterSettings,
    routing: LiveSource[RoutingConfig],
    now: datetime | None = None,
) -> Round:
    """One round: claim the decisions whose check is due and request a check of each. Nothing
    published (`NoLiveRouting`) fails the round before anything is claimed."""
    at = now or datetime.now(UTC)
    recheck = timedelta(seconds=settings.sla_recheck_s)
    async with unit_of_work(sessions) as session:
        _, config = await live_routing(routing, session)
        due = await repository.claim_due_checks(
            session,
            now=at,
            recheck_at=at + recheck,
            limit=settings.sla_check_batch,
        )
        next_due = await repository.next_check_after(session, at)
    await commands.send(
        ROUTER_COMMANDS,
        [
            RouterCommand(
                command_id=f"{_KIND[route]}:{decision_id}:{at.isoformat()}",
                kind=_KIND[route],
                lead_id=lead_id,
                decision_id=decision_id,
                at=at,
            )
            for decision_id, lead_id, route in due
        ],
    )
    if due:
        log.info("decision timer: %d decisions due", len(due))
    return Round(
        requested=len(due),
        full=len(due) >= settings.sla_check_batch,
        next_due=next_due,
        horizon=shortest_wait_for_new_checks(config, recheck=recheck),
    )


def shortest_wait_for_new_checks(config: RoutingConfig, *, recheck: timedelta) -> timedelta:
    """How soon after a round a check it did not see can fall due: a decision made later is
    due its SLA window after it is made (the shortest configured), a check pushed back by the
    consumer or claimed by another instance `recheck` after that."""
    sla = config.sla
    return min(
        sla.default, *sla.by_priority.values(), *sla.by_grade.values(), recheck,
        config.nurture.settle,
    )  # fmt: skip


def next_round_in(done: Round, *, now: datetime, interval: timedelta) -> timedelta:
    """The wait before the next round: until the earliest known check, but no longer than the
    round's `horizon` (what a later decision may need) and no shorter than `interval`; a full
    round leaves more to claim, so the next one comes after `interval`."""
    if done.full:
        return interval
    wait = done.horizon if done.next_due is None else min(done.next_due - now, done.horizon)
    return max(wait, interval)


class SlaTimer:
    """The companion's work: a round, then the wait `next_round_in` allows. `routing`: where
    each round reads the live routing (`routing_versions.ROUTING`)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        commands: CommandSender,
        settings: RouterSettings,
        routing: LiveSource[RoutingConfig],
    ) -> None:
        self._sessions = sessions
        self._commands = commands
        self._settings = settings
        self._routing = routing
        self._interval = timedelta(seconds=settings.sla_check_interval_s)

    async def round(self) -> float:
        """One round; returns the seconds until the next."""
        now = datetime.now(UTC)
        done = await request_sla_checks(
            sessions=self._sessions,
            commands=self._commands,
            settings=self._settings,
            routing=self._routing,
            now=now,
        )
        return next_round_in(done, now=now, interval=self._interval).total_seconds()
