"""The consumer handler: `leads.lifecycle`, `leads.scored`, `routing.sdr`, `routing.nurture`,
`crm.feedback` and `privacy.erasures` in; the console's read model out, and `privacy.reports`
(the only topic it produces: its part of each erasure, sent once committed).

Per batch, in the runner's transaction:
0. The leads that a stage change, a decision or a CRM report names by id, and the leads of the
   batch's erasure notices, are locked (`repository.lock_leads`, one statement; none for a
   batch of score changes alone). Each erasure is then done (`_erase`: records deleted, the
   rows that feed the counts anonymised, the leads remembered as erased, a report output).
   After reading the records (step 1), the leads named by such a message that have no record
   are looked up among the erased ones (one query; none when every lead has a record), and
   their messages are dropped and counted (`leadflow_console_erased_lead_messages_dropped_total`):
   a late message never brings an erased lead back. Why the locks close the race with an
   erasure handled on another replica: `repository` module docstring.
1. The records of every lead the batch names are read and locked, with their decisions and
   which of the batch's CRM reports were applied before (`repository`: three statements;
   one for a batch of score changes only, which touch no decision or report).
2. Messages are applied in consumption order to those records (`lead_record`) and decisions
   (`speed`); the funnel's counters change by the difference between each lead's record before
   and after the batch (`funnel.change_of`).
3. Everything is written in one statement (`repository.store_batch`).
Exactly once: the runner applies a batch at most once; a message produced twice upstream is
recognised (a transition, decision or report already stored changes nothing), and counters
follow the records, so a repeat adds nothing. An erasure notice delivered again changes
nothing and reports again (zero rows).
A CRM report for a lead the console has not seen (by id or email) is not kept: its lead's
first stage change brings what the funnel needs, and the timeline asks score for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from services.console import repository
from services.console.funnel import Share, change_of
from services.console.lead_record import LeadRecord, on_lifecycle, on_scored
from services.console.metrics import APPLIED, ERASED_LEAD_MESSAGES_DROPPED
from services.console.repository import StoredFeedback
from services.console.speed import (
    DecisionRow,
    SpeedTally,
    on_decision,
    on_feedback,
    on_stage_change,
)
from shared.consumer import Message, Output
from shared.contracts import (
    CrmFeedback,
    ErasureNotice,
    LeadScored,
    LifecycleChanged,
    RoutingDecision,
)
from shared.privacy import erasure_report

log = logging.getLogger(__name__)


class ReadModelHandler:
    """Builds the console's read model from the topics (see the module doc)."""

    async def __call__(
        self, messages: Sequence[Message[BaseModel]], session: AsyncSession
    ) -> Sequence[Output]:
        now = datetime.now(UTC)
        notices = [m.value for m in messages if isinstance(m.value, ErasureNotice)]
        messages = [m for m in messages if not isinstance(m.value, ErasureNotice)]
        lead_ids, emails, feedback_ids, routed = _named(messages)
        # Step 0 (module doc): the lead locks, before any row is read.
        await repository.lock_leads(
            session, [*routed, *(lead_id for notice in notices for lead_id in notice.lead_ids)]
        )
        reports = [await _erase(session, notice, now) for notice in notices]
        if not messages:
            return reports
        stored = await repository.load_leads(session, lead_ids=lead_ids, emails=emails)
        before: dict[str, LeadRecord | None] = {record.lead_id: record for record in stored}
        # Late messages: a lead with no record that a message would write rows about may have
        # been erased (asked after the locks; only for those leads, one query).
        unknown = routed - before.keys()
        erased = await repository.ERASED_LEADS.among(session, unknown) if unknown else set()
        by_email = {record.email: record.lead_id for record in stored if record.email}
        records: dict[str, LeadRecord | None] = dict(before)
        # Most batches are score changes only, which touch no decision and no CRM report: those
        # are read only for the leads with a stage change, a decision or a report in the batch
        # (a report named by email: its lead was found among the stored ones).
        routed |= {record.lead_id for record in stored if record.lead_id not in lead_ids}
        decisions = await repository.load_decisions(session, sorted(routed)) if routed else {}
        loaded = {row.decision_id: row for rows in decisions.values() for row in rows.values()}
        known_feedback = (
            await repository.stored_feedback(session, feedback_ids) if feedback_ids else set()
        )
        stage_changes: list[LifecycleChanged] = []
        feedback: list[StoredFeedback] = []
        reps: list[tuple[str, str, str]] = []
        tally = SpeedTally()
        for message in messages:
            value = message.value
            if erased and _lead_named(value) in erased:
                ERASED_LEAD_MESSAGES_DROPPED.labels(kind=_kind(value)).inc()
                continue
            if isinstance(value, LifecycleChanged):
                record = records.get(value.lead_id)
                if record is not None and record.knows(value.transition_id):
                    APPLIED.labels(kind="repeated").inc()
                    continue
                records[value.lead_id] = on_lifecycle(record, value)
                stage_changes.append(value)
                if value.profile.email:
                    by_email[value.profile.email] = value.lead_id
                rows = decisions.setdefault(value.lead_id, {})
                on_stage_change(rows, value)
                APPLIED.labels(kind="stage change").inc()
            elif isinstance(value, LeadScored):
                records[value.lead_id] = on_scored(records.get(value.lead_id), value)
                APPLIED.labels(kind="score").inc()
            elif isinstance(value, RoutingDecision):
                rows = decisions.setdefault(value.lead_id, {})
                if value.decision_id in rows:
                    APPLIED.labels(kind="repeated").inc()
                    continue
                on_decision(rows, value, tally)
                if value.owner is not None:
                    reps.append((value.owner.id, value.owner.name, value.owner.team))
                APPLIED.labels(kind="decision").inc()
            elif isinstance(value, CrmFeedback):
                # leadflow keeps emails lower-case (enrich); a CRM may not
                lead_id = value.lead_id or by_email.get((value.email or "").lower())
                if value.feedback_id in known_feedback or lead_id is None:
                    APPLIED.labels(kind="repeated" if lead_id else "unknown lead").inc()
                    continue
                known_feedback.add(value.feedback_id)
                feedback.append(StoredFeedback(lead_id=lead_id, feedback=value))
                rows = decisions.setdefault(lead_id, {})
                on_feedback(rows, value, tally)
                APPLIED.labels(kind="crm report").inc()
        share = Share()
        for lead_id, after in records.items():
            if after is not before.get(lead_id):
                share.add(change_of(before.get(lead_id), after))
        await repository.store_batch(
            session,
            leads=[r for i, r in records.items() if r is not None and r is not before.get(i)],
            stage_changes=stage_changes,
            decisions=_changed(decisions, loaded),
            feedback=feedback,
            reps=reps,
            share=share,
            tally=tally,
        )
        return reports


async def _erase(session: AsyncSession, notice: ErasureNotice, now: datetime) -> Output:
    """The console's part of an erasure, under the leads' locks (taken by the caller): the
    records deleted and the rows that feed the counts anonymised (`repository.erase_leads`),
    the leads remembered as erased in the same transaction, and the report to send once it
    commits. A notice delivered again changes nothing and reports again (zero rows)."""
    erased = await repository.erase_leads(session, notice.lead_ids, at=now)
    await repository.ERASED_LEADS.remember(session, notice.lead_ids)
    log.info(
        "erasure %s: %d leads; %d records deleted; anonymised %d stage changes, %d decisions,"
        " %d CRM reports, %d audit entries",
        notice.request_id,
        len(set(notice.lead_ids)),
        erased.leads,
        erased.stage_changes,
        erased.decisions,
        erased.feedback,
        erased.audit,
    )
    return erasure_report(
        notice,
        service="console",
        erased=erased.deleted(),
        anonymised=erased.anonymised(),
        at=now,
    )


def _lead_named(value: BaseModel) -> str | None:
    """The lead a message names by id (None: a CRM report naming its lead by email alone)."""
    if isinstance(value, LifecycleChanged | LeadScored | RoutingDecision | CrmFeedback):
        return value.lead_id
    return None


def _kind(value: BaseModel) -> str:
    """A message's kind, as `APPLIED` names it."""
    if isinstance(value, LifecycleChanged):
        return "stage change"
    if isinstance(value, RoutingDecision):
        return "decision"
    if isinstance(value, CrmFeedback):
        return "crm report"
    return "score"


def _named(
    messages: Sequence[Message[BaseModel]],
) -> tuple[list[str], list[str], list[str], set[str]]:
    """The lead ids, emails and CRM report ids the batch names, and the ids of the leads with a
    message other than a score change (whose decisions it may change)."""
    lead_ids: set[str] = set()
    emails: set[str] = set()
    feedback_ids: list[str] = []
    routed: set[str] = set()
    for message in messages:
        value = message.value
        if isinstance(value, CrmFeedback):
            feedback_ids.append(value.feedback_id)
            if value.lead_id:
                lead_ids.add(value.lead_id)
                routed.add(value.lead_id)
            elif value.email:
                emails.add(value.email.lower())
        else:
            lead_ids.add(value.lead_id)  # type: ignore[attr-defined]
            if not isinstance(value, LeadScored):
                routed.add(value.lead_id)  # type: ignore[attr-defined]
    return sorted(lead_ids), sorted(emails), feedback_ids, routed


def _changed(
    decisions: dict[str, dict[str, DecisionRow]], loaded: dict[str, DecisionRow]
) -> list[DecisionRow]:
    """The decisions that are new or differ from what was loaded."""
    return [
        row
        for rows in decisions.values()
        for row in rows.values()
        if loaded.get(row.decision_id) != row
    ]
