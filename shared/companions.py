"""Companions: a service's periodic work beside its consumer or its HTTP server.

A companion is a coroutine that does one round of work and says when it wants its next round
(score's decay and rescore sweeps, router's SLA timer, enrich's re-enrichment, housekeeping and
reference reload). The shell (`shared.service`) runs each one in its own task from the moment
the service is started until it stops; there is no other way to schedule periodic work.

Work whose effects must be exactly-once goes through the service's own command topic and
consumer (`shared.commands.CommandSender`), never straight to an output topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Round = Callable[[], Awaitable[float]]
"""One round of a companion's work; returns the seconds to wait before the next round."""


@dataclass(frozen=True)
class Companion:
    """A named round of work, run again after the wait the round returns.

    A round that raises is logged and tried again after `retry_after_s` (never fatal: a
    database or broker outage must not stop the service's consumer)."""

    name: str
    round: Round
    retry_after_s: float

    @classmethod
    def every(
        cls, name: str, interval_s: float, work: Callable[[], Awaitable[object]]
    ) -> Companion:
        """A companion whose rounds come `interval_s` apart, whatever the round did."""

        async def round_then_wait() -> float:
            await work()
            return interval_s

        return cls(name=name, round=round_then_wait, retry_after_s=interval_s)


async def run_companion(companion: Companion) -> None:
    """Run `companion`'s rounds until cancelled: the first at once, each next one after the
    wait the previous round asked for (or `retry_after_s` after a failure)."""
    while True:
        try:
            wait_s = await companion.round()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; retrying in %.0fs", companion.name, companion.retry_after_s)
            wait_s = companion.retry_after_s
        await asyncio.sleep(max(wait_s, 0.0))
