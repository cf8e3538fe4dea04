"""Periodic work of the score service, done through `score.commands` so that the consumer
applies it with exactly-once effects.

- The decay sweep: MQLs whose score may have decayed below the line without a new event. Every
  round it asks to re-evaluate the MQLs least recently evaluated (recycling a lead that stayed
  below the line long enough). Asking twice is harmless: a later re-evaluation only repeats the
  arithmetic.
- The rescore sweeps (`RescoreSweep`): after a rules change, leads still scored under another
  version are asked to be rescored, batch after batch, while live scoring goes on; after a
  model's publication, likewise the identified leads without a likelihood under it. Progress
  is logged, on `leadflow_score_leads_to_rescore{under}` and at `GET /v1/rules/rescore` and
  `GET /v1/models`. A lead already rescored ignores a repeated request.

Both are companions (`shared.companions`): the decay sweep runs every `sweep_interval_s`; the
rescore sweep's `step` says itself when it wants to look again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.config import ScoreSettings
from services.score.learning.runs import MODELS
from services.score.repository import Rescored
from services.score.rules_versions import RULES
from shared.commands import CommandSender
from shared.contracts import ScoreCommand
from shared.topics import SCORE_COMMANDS

log = logging.getLogger(__name__)

STALLED_AFTER_S = 300.0
"""A batch not done this long after it was asked (consumer down, rebalancing) is left to the
next pass rather than holding the sweep."""
POLL_S = 0.25
"""How soon the rescore sweep looks again whether the batch it asked is done."""
LEADS_TO_RESCORE = Gauge(
    "leadflow_score_leads_to_rescore",
    "Leads still scored under another rules version (under=rules), or identified leads without "
    "a likelihood under the live model (under=model)",
    ["under"],
)


async def sweep_decayed_mqls(
    *,
    sessions: async_sessionmaker[AsyncSession],
    commands: CommandSender,
    settings: ScoreSettings,
    now: datetime | None = None,
) -> int:
    """One round; returns how many re-evaluations were requested (and acknowledged)."""
    at = now or datetime.now(UTC)
    async with sessions() as session:
        lead_ids = await repository.mqls_to_reevaluate(
            session,
            evaluated_before=at - timedelta(seconds=settings.sweep_stale_after_s),
            limit=settings.sweep_batch,
        )
    await commands.send(
        SCORE_COMMANDS,
        [
            ScoreCommand(
                command_id=f"sweep:{at.isoformat()}:{lead_id}",
                kind="reevaluate",
                lead_id=lead_id,
                at=at,
            )
            for lead_id in lead_ids
        ],
    )
    if lead_ids:
        log.info("decay sweep: %d MQLs to re-evaluate", len(lead_ids))
    return len(lead_ids)


@dataclass
class RescoreProgress:
    """Where the rescore under the running rules stands, as this process's sweep sees it.

    A *pass* walks every lead on another version once, in index order; it starts with a count
    of them (`pass_leads`) and counts a lead `rescored` once the consumer has stored it under
    the running version. `to_rescore` is `pass_leads - rescored` during a pass, the fresh count
    between passes (0: every lead is on the running rules).
    """

    under: Rescored
    version: str | None  # the running rules' or the live model's (None: no model published)
    to_rescore: int | None = None
    pass_started_at: datetime | None = None
    pass_leads: int = 0
    asked: int = 0
    rescored: int = 0
    last_round_at: datetime | None = None

    def restart(self, version: str | None) -> None:
        """Forget the pass: `version` is the new target, nothing is counted yet."""
        self.version, self.to_rescore, self.pass_started_at = version, None, None
        self.pass_leads = self.asked = self.rescored = 0

    def view(self) -> dict[str, object]:
        return {
            ("rule_version" if self.under == "rules" else "model_version"): self.version,
            "to_rescore": self.to_rescore,
            "done": self.to_rescore == 0,
            "pass": {
                "started_at": self.pass_started_at.isoformat() if self.pass_started_at else None,
                "leads": self.pass_leads,
                "asked": self.asked,
                "rescored": self.rescored,
            },
            "last_round_at": self.last_round_at.isoformat() if self.last_round_at else None,
        }


class RescoreSweep:
    """After a rules change (`under="rules"`), asks the consumer (through `score.commands`) to
    rescore every lead still scored under another version, a batch at a time, while live
    scoring goes on; after a model's publication (`under="model"`), every identified lead that
    has no likelihood under it yet. Both follow publications: each round asks which version is
    live (`rules_versions.RULES`, `learning.runs.MODELS`) and starts a new pass when it changed.
    A rules publication during a pass for the previous version ends that pass: the leads it
    rescored are on the previous version and are found again by the new pass's count; a
    rescore request of the old pass that arrives later rescores its lead under the batch's live
    rules (the handler reads them per batch), so it too ends on the new version.

    Cost per batch does not grow with the number of leads: the next batch comes from an index on
    (version, lead_id) after a keyset cursor, and whether the last batch is done is a
    primary-key lookup of its ids. Leads on other versions are counted (an index-only range,
    as long as what is left) once per pass, not per step. The sweep looks every `POLL_S` whether
    the batch it asked is done and asks the next as soon as it is, so the rescoring rate follows
    the consumer's pace rather than one batch per interval; a batch not done within
    `rescore_interval_s` is looked at only every `rescore_interval_s`, and once every lead is on
    the running version the sweep looks every `rescore_interval_s`. Asking twice is harmless: a
    lead already on it ignores the request.
    """

    def __init__(self, *, under: Rescored) -> None:
        self.progress = RescoreProgress(under=under, version=None)
        self._cursor: tuple[str, str] | None = None
        self._pending: list[str] = []
        self._asked_at = 0.0  # when the pending batch was asked (event loop clock)

    async def step(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        commands: CommandSender,
        settings: ScoreSettings,
        now: datetime | None = None,
    ) -> float:
        """One step of the pass: count what the asked batch has done, or ask the next batch.
        Returns the seconds until the sweep wants its next step (a companion's round)."""
        progress = self.progress
        clock = asyncio.get_running_loop().time
        at = now or datetime.now(UTC)
        progress.last_round_at = at
        async with sessions() as session:
            store = MODELS if progress.under == "model" else RULES
            live = await store.live_version(session)
            if live != progress.version:
                self._new_target(live)
            progress = self.progress
            version = progress.version
            if version is None:  # nothing published: nothing to bring leads onto
                return settings.rescore_interval_s
            waiting = await self._waiting(session, version)
            batch = (
                []
                if waiting
                else await self._next_batch(session, version, settings.sweep_batch, at)
            )
        if waiting:
            waited = clock() - self._asked_at
            if waited > STALLED_AFTER_S:
                # Never stall the pass on requests that do not come back; the leads left
                # behind are found again by the next pass's count.
                log.warning(
                    "rescore: %d leads not done %.0fs after they were asked; moving on",
                    len(self._pending),
                    waited,
                )
                self._pending = []
                return POLL_S
            return POLL_S if waited < settings.rescore_interval_s else settings.rescore_interval_s
        if not batch:
            progress.to_rescore = 0
            LEADS_TO_RESCORE.labels(under=progress.under).set(0)
            return settings.rescore_interval_s
        await commands.send(
            SCORE_COMMANDS,
            [
                ScoreCommand(
                    command_id=f"rescore:{progress.under}-{version}:{lead_id}",
                    kind="rescore",
                    lead_id=lead_id,
                    at=at,
                )
                for _, lead_id in batch
            ],
        )
        self._cursor, self._pending = batch[-1], [lead_id for _, lead_id in batch]
        self._asked_at = clock()
        progress.asked += len(batch)
        log.info(
            "rescoring under %s %s: %d leads to go", progress.under, version, progress.to_rescore
        )
        return POLL_S

    def _new_target(self, version: str | None) -> None:
        """Another version went live: a new pass (the old one's leads are found again). The
        progress object is reset in place: the API holds it."""
        self.progress.restart(version)
        self._cursor, self._pending = None, []

    async def _waiting(self, session: AsyncSession, version: str) -> bool:
        """Whether leads of the last batch are still on other rules (counts those done)."""
        if not self._pending:
            return False
        progress = self.progress
        still = await repository.leads_still_on_other_version(
            session, progress.under, self._pending, version=version
        )
        progress.rescored += len(self._pending) - len(still)
        progress.to_rescore = max(progress.pass_leads - progress.rescored, len(still))
        LEADS_TO_RESCORE.labels(under=progress.under).set(progress.to_rescore)
        self._pending = still
        return bool(still)

    async def _next_batch(
        self, session: AsyncSession, version: str, limit: int, at: datetime
    ) -> list[tuple[str, str]]:
        """The next leads of the pass; at the end of a pass, a fresh count and a new pass if
        leads on other versions remain (late requests, an old replica during a rollout)."""
        progress = self.progress
        if self._cursor is not None:
            batch = await repository.leads_on_other_version(
                session, progress.under, version=version, after=self._cursor, limit=limit
            )
            if batch:
                return batch
        self._cursor = None
        left = await repository.count_leads_on_other_version(
            session, progress.under, version=version
        )
        if left == 0:
            return []
        progress.pass_started_at, progress.pass_leads, progress.to_rescore = at, left, left
        progress.asked = progress.rescored = 0
        LEADS_TO_RESCORE.labels(under=progress.under).set(left)
        return await repository.leads_on_other_version(
            session, progress.under, version=version, after=None, limit=limit
        )
