"""Read-side views over score's tables: the explanation of a lead's score, and the stored
histories a simulation replays. Used by the CLI and the HTTP endpoints; no writes.

A candidate rules file may come from an HTTP request: `parse_candidate` validates it off the event
loop, and `simulate_stored` stops at its time budget (`SimulationTimedOut`), so neither can
stall the service that serves them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.engine.explain import (
    Explanation,
    IdentityLine,
    event_lines,
    explain,
    state_of,
)
from services.score.engine.rescoring import (
    Check,
    HistoryItem,
    LeadHistory,
    SimulationReport,
    SimulationSummary,
    simulate,
    summarise,
)
from services.score.engine.ruleset import RuleSet, parse_rules
from services.score.engine.scoring import LedgerLine, evaluate
from services.score.learning.activity import activity_of
from services.score.learning.runs import MODELS
from shared.contracts import Likelihood
from shared.simulations import Progress


class SimulationTimedOut(Exception):
    """A simulation that ran past its time budget, stopped where it was; nothing is reported
    but how far it got (`leads`: the leads compared in full)."""

    def __init__(self, *, budget_s: float, leads: int) -> None:
        super().__init__(
            f"the simulation stopped at its time budget of {budget_s:g} s, after comparing "
            f"{leads} lead{'' if leads == 1 else 's'}"
        )
        self.budget_s = budget_s
        self.leads = leads


async def explain_lead(
    session: AsyncSession, key: str, rules: RuleSet, at: datetime
) -> Explanation | None:
    """Why the lead (by id or email; a merged lead's survivor) has its score, as of `at`."""
    lead = await repository.find_lead(session, key)
    if lead is None:
        return None
    ledger = (await repository.load_ledgers(session, [lead.lead_id]))[lead.lead_id]
    history = (await repository.load_histories(session, [lead.lead_id]))[lead.lead_id]
    return explain(
        likelihood=await _likelihood(session, lead, ledger, history, rules, at),
        events=event_lines(history),
        lead_id=lead.lead_id,
        email=lead.email,
        stage=lead.stage.value,
        ledger=ledger,
        stages=await repository.stage_history(session, lead.lead_id),
        rules=rules,
        at=at,
        identity=[
            IdentityLine(
                at=note.at, what=note.what, detail=note.detail, other_lead_id=note.other_lead_id
            )
            for note in await repository.identity_notes(session, lead.lead_id)
        ],
        sales=await repository.sales_history(session, lead.lead_id),
    )


async def _likelihood(
    session: AsyncSession,
    lead: repository.LeadRow,
    ledger: Sequence[LedgerLine],
    history: Sequence[HistoryItem],
    rules: RuleSet,
    at: datetime,
) -> Likelihood | None:
    """The lead's likelihood under the live model as of `at` (None: no model published, or an
    anonymous lead), from its kept activity, or its history while the rescore has not given it
    one under this model yet."""
    live = await MODELS.live(session)
    if live is None or not lead.identified:
        return None
    version, scorer = live
    activity = lead.activity if lead.model_version == version else None
    if activity is None:
        activity = activity_of(history, keep_s=scorer.keep_s)
    state = state_of(ledger)
    return scorer.lead_likelihood(
        activity,
        lead.picture.facts if lead.picture is not None else {},
        card=evaluate(rules, state, at),
        state=state,
        at=at,
        version=version,
    )


async def lead_histories(
    sessions: async_sessionmaker[AsyncSession], *, batch: int = 500
) -> AsyncIterator[list[LeadHistory]]:
    """Every live lead with its scored messages in order, in chunks of `batch` leads by lead id
    (keyset pagination: memory holds one chunk, however many leads there are), and the kept
    picture of those none of whose own messages is left (past the history's retention: see
    `rescoring.with_kept_picture`), read for them alone."""
    after = ""
    while True:
        async with sessions() as session:
            leads = await repository.live_leads_after(session, after, limit=batch)
            if not leads:
                return
            histories = await repository.load_histories(session, [lead[0] for lead in leads])
            bare = [lead_id for lead_id, items in histories.items() if not _own(items)]
            pictures = await repository.kept_pictures(session, bare)
        yield [
            LeadHistory(lead_id, stage, identified, histories[lead_id], email, likelihood,
                        picture=pictures.get(lead_id))
            for lead_id, stage, identified, email, likelihood in leads
        ]  # fmt: skip
        after = leads[-1][0]


def _own(items: Sequence[HistoryItem]) -> bool:
    """Whether one of a lead's messages carries its own picture."""
    return any(item.profile for item in items)


async def parse_candidate(text: str, *, source: str = "request body") -> RuleSet:
    """A candidate rule set from YAML text, validated in a worker thread (a document at the size
    limit is about 2 s of CPU); `RulesFileError` naming `source`, the line and the field."""
    return await asyncio.to_thread(parse_rules, text, source=source)


async def simulate_stored(
    sessions: async_sessionmaker[AsyncSession],
    *,
    live: RuleSet,
    candidate: RuleSet,
    at: datetime,
    deadline_s: float | None = None,
    progress: Progress | None = None,
) -> SimulationSummary:
    """What `candidate` would change against `live`, over every stored lead, as of `at`.

    The replay is CPU work: each chunk runs in a worker thread, so a service that simulates
    keeps consuming and answering health checks meanwhile; memory holds one chunk and the
    report's bounded lists (`SimulationReport`). With `deadline_s`, the simulation raises
    `SimulationTimedOut` once that many seconds have passed, checked before each message
    replayed and each chunk read (the thread stops too: none is left running). None: no limit,
    for the operator's CLI. `progress`: a background simulation's (`shared.simulations`),
    told how many leads are compared after each chunk; a cancel ends the simulation there."""
    report = SimulationReport(candidate_version=candidate.version)
    check = None if deadline_s is None else _budget(deadline_s, report)
    total = None
    if progress is not None:
        async with sessions() as session:
            total = await repository.count_live_leads(session)
        await progress.update(done=0, total=total, force=True)
    async for chunk in lead_histories(sessions):
        if check is not None:
            check()
        await asyncio.to_thread(simulate, live, candidate, chunk, at=at, into=report, check=check)
        if progress is not None:
            await progress.update(done=report.leads, total=max(total or 0, report.leads))
    if progress is not None:  # the count at the start may have grown or shrunk since
        await progress.update(done=report.leads, total=report.leads, force=True)
    return summarise(report, live_version=live.version, at=at)


def _budget(seconds: float, report: SimulationReport) -> Check:
    """A check that raises `SimulationTimedOut` once `seconds` have passed from now."""
    stop_at = time.monotonic() + seconds

    def check() -> None:
        if time.monotonic() >= stop_at:
            raise SimulationTimedOut(budget_s=seconds, leads=report.leads)

    return check
