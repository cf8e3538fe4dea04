"""The console's tables (schema `console`): reading a batch's leads and decisions, storing what
the batch changed, and the queries behind the pages.

A batch is read in three statements (its leads, locked; their decisions; which of its CRM
reports are stored already) and written in one (`store_batch`): rows travel as one JSON
document per table (`shared.db.json_document`). Counters are added with
`ON CONFLICT ... DO UPDATE SET n = n + EXCLUDED.n` in key order, so two replicas adding to the
same day's counters wait for each other instead of deadlocking. Each funnel counter is kept
three ways: per day and dimensions (a filtered cohort), per day alone (the unfiltered one) and
per dimensions alone (the leads in each stage now): a page reads the smallest that answers it.

Erasure (`erase_leads`) and lead locks (`lock_leads`): a batch that may write rows about a lead
the console has no record of yet (its first stage change, a decision or a CRM report) holds
that lead's lock, an advisory lock per lead id, in its first statement; an erasure holds the
same locks before it deletes and anonymises. A record's row lock (`load_leads`) cannot cover a
lead without a record, the lock can: so a batch either commits before the erasure (whose
statements, after its locks, then erase what the batch wrote) or waits for it, and then finds
no record and the lead erased (`ERASED_LEADS.among`, asked after its locks) and drops its
messages. Score changes only update a record that exists (under its row lock, which the
erasure's delete waits for or skips), so a batch of score changes alone takes no lead lock.
Lock order: lead locks (one statement, in key order), then the records' row locks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.console.funnel import Share
from services.console.lead_record import LeadRecord, moves_from_json, moves_to_json
from services.console.speed import DecisionRow, SpeedTally
from shared import advisory_locks
from shared.contracts import CrmFeedback, LifecycleChanged, Score, Stage
from shared.db import execute, fetch, fetchrow, json_document
from shared.privacy import ErasedLeads

SCHEMA = "console"
ERASED_LEADS = ErasedLeads(SCHEMA)
"""The leads the console erased (`console.erased_leads`, migration 0006)."""


LEAD_COLUMNS = (
    "lead_id, created_at, stage, stage_at, moves, email, name, company, title, country, source,"
    " import_list, campaign, score, score_at, likelihood"
)


def record_of(row: Any) -> LeadRecord:
    return LeadRecord(
        lead_id=row["lead_id"],
        created_at=row["created_at"],
        stage=Stage(row["stage"]),
        stage_at=row["stage_at"],
        moves=moves_from_json(row["moves"]),
        email=row["email"],
        name=row["name"],
        company=row["company"],
        title=row["title"],
        country=row["country"],
        source=row["source"],
        import_list=row["import_list"],
        campaign=row["campaign"],
        score=Score.model_validate(row["score"]) if row["score"] is not None else None,
        score_at=row["score_at"],
        likelihood=row["likelihood"],
    )


def _lead_row(record: LeadRecord) -> dict[str, Any]:
    return {
        "lead_id": record.lead_id,
        "created_at": record.created_at,
        "stage": record.stage.value,
        "stage_at": record.stage_at,
        "moves": moves_to_json(record.moves),
        "email": record.email,
        "name": record.name,
        "company": record.company,
        "title": record.title,
        "country": record.country,
        "source": record.source,
        "import_list": record.import_list,
        "campaign": record.campaign,
        "score": record.score.model_dump(mode="json") if record.score is not None else None,
        "score_at": record.score_at,
        "likelihood": record.likelihood,
    }


async def load_leads(
    session: AsyncSession, *, lead_ids: Sequence[str], emails: Sequence[str]
) -> list[LeadRecord]:
    """The stored records of `lead_ids`, and of the leads with one of `emails` (a CRM report
    may name a lead by email only), locked until the batch commits (ordered: no deadlock)."""
    rows = await fetch(
        session,
        f"SELECT {LEAD_COLUMNS} FROM console.leads"
        " WHERE lead_id = ANY($1::text[]) OR email = ANY($2::text[])"
        " ORDER BY lead_id FOR UPDATE",
        list(lead_ids),
        list(emails),
    )
    return [record_of(row) for row in rows]


async def lock_leads(session: AsyncSession, lead_ids: Iterable[str]) -> None:
    """The console's lead locks (module doc; `shared.advisory_locks.lock_leads`)."""
    await advisory_locks.lock_leads(session, lead_ids, space=advisory_locks.CONSOLE_LEADS)


async def lead_exists(session: AsyncSession, lead_id: str) -> bool:
    """Whether the lead has a record (asked after its lock: an erasure may have just ended)."""
    rows = await fetch(session, "SELECT 1 FROM console.leads WHERE lead_id = $1", lead_id)
    return bool(rows)


@dataclass(frozen=True, slots=True)
class Erased:
    """What `erase_leads` did: the records deleted, and the rows kept for counts with every
    link to the person removed, per table."""

    leads: int
    stage_changes: int
    decisions: int
    feedback: int
    audit: int

    def deleted(self) -> dict[str, int]:
        return {"leads": self.leads}

    def anonymised(self) -> dict[str, int]:
        return {
            "stage_changes": self.stage_changes,
            "decisions": self.decisions,
            "feedback": self.feedback,
            "audit": self.audit,
        }


async def erase_leads(session: AsyncSession, lead_ids: Sequence[str], *, at: datetime) -> Erased:
    """Erase the leads from the read model, in one statement; the caller holds their locks
    (`lock_leads`, in an earlier statement, so this one's snapshot sees what a batch of the
    same leads committed while the erasure waited).

    - `leads`: the records (email, name, company, title, country, first touch, moves, score)
      are deleted. What they added to the funnel's counters (`funnel`, `stage_durations`,
      `stage_flows`, their rollups and `stage_now`: counts per day and dimensions, naming no
      lead) stays: the funnel keeps counting the leads it saw.
    - `stage_changes`, `decisions`, `feedback`: kept, so speed-to-lead, SLA outcomes, the
      waiting queues and the SDR load stay true, with every link to the person removed: the
      lead id replaced by a pseudonym drawn at random for each lead ("erased-<uuid4>", the
      same for all of one lead's rows, never stored beside the lead id: it exists in this
      statement only), and every id a CRM or score could know replaced by a random one
      (`transition_id` holds the lead id; decision and CRM report ids are the CRMs'), a
      decision's `supersedes` renamed with the decision it names. Free text that may quote
      the person or their company is cleared: a stage change's `reason` (a CRM's reason is
      quoted there), a decision's `reasons` (the account's name, the stage change's reason),
      a CRM report's `reason`. Times, stages, scores, reps, queues, tracks and outcomes stay.
      A decision still open is closed at `at` ("lead erased"): the router deleted it, and no
      message will ever close it, so the queues' waiting leads stay true.
    - `audit`: who looked at which lead stays (the console users' accountability), with the
      lead's pseudonym instead of its id (the log holds no other data of leads).
    - `reps`, `dimension_values` and the counters name no lead: kept as they are.
    Each table is read by its lead index; a second call changes nothing."""
    ids = sorted(set(lead_ids))
    row = await fetchrow(
        session,
        """
        WITH pseudonym AS MATERIALIZED (
            SELECT erased.lead_id, 'erased-' || gen_random_uuid() AS pseudonym
              FROM unnest($1::text[]) AS erased(lead_id)
        ), leads AS (
            DELETE FROM console.leads WHERE lead_id = ANY($1::text[]) RETURNING 1
        ), stage_changes AS (
            UPDATE console.stage_changes AS change
               SET transition_id = 'erased-' || gen_random_uuid(),
                   lead_id = pseudonym.pseudonym, reason = ''
              FROM pseudonym
             WHERE change.lead_id = pseudonym.lead_id
            RETURNING 1
        ), renamed AS MATERIALIZED (
            SELECT decision.decision_id, 'erased-' || gen_random_uuid() AS new_id
              FROM console.decisions AS decision
             WHERE decision.lead_id = ANY($1::text[])
        ), decisions AS (
            UPDATE console.decisions AS decision
               SET decision_id = renamed.new_id,
                   supersedes = CASE WHEN decision.supersedes IS NOT NULL THEN coalesce(
                       (SELECT superseded.new_id FROM renamed AS superseded
                         WHERE superseded.decision_id = decision.supersedes),
                       'erased-' || gen_random_uuid()) END,
                   lead_id = pseudonym.pseudonym, reasons = '{}',
                   closed_at = coalesce(decision.closed_at, $2),
                   closed_reason = coalesce(decision.closed_reason, 'lead erased')
              FROM renamed, pseudonym
             WHERE decision.decision_id = renamed.decision_id
               AND decision.lead_id = pseudonym.lead_id
            RETURNING 1
        ), feedback AS (
            UPDATE console.feedback AS report
               SET feedback_id = 'erased-' || gen_random_uuid(),
                   lead_id = pseudonym.pseudonym, reason = NULL
              FROM pseudonym
             WHERE report.lead_id = pseudonym.lead_id
            RETURNING 1
        ), audit AS (
            UPDATE console.audit AS entry
               SET lead_id = pseudonym.pseudonym
              FROM pseudonym
             WHERE entry.lead_id = pseudonym.lead_id
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM leads) AS leads,
               (SELECT count(*) FROM stage_changes) AS stage_changes,
               (SELECT count(*) FROM decisions) AS decisions,
               (SELECT count(*) FROM feedback) AS feedback,
               (SELECT count(*) FROM audit) AS audit
        """,
        ids,
        at,
    )
    assert row is not None  # aggregates answer one row
    return Erased(
        leads=row["leads"],
        stage_changes=row["stage_changes"],
        decisions=row["decisions"],
        feedback=row["feedback"],
        audit=row["audit"],
    )


DECISION_COLUMNS = (
    "decision_id, lead_id, route, team, rep, rep_name, target, strategy, reasons, supersedes,"
    " received_at, decided_at, sla_due_at, speed_ms, queued, accepted_at, closed_at,"
    " closed_reason"
)


def decision_of(row: Any) -> DecisionRow:
    values = dict(row)
    values["reasons"] = tuple(values["reasons"])
    return DecisionRow(**values)


async def load_decisions(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, dict[str, DecisionRow]]:
    """Every stored decision of `lead_ids`, by lead then decision id (a lead has a handful)."""
    rows = await fetch(
        session,
        f"SELECT {DECISION_COLUMNS} FROM console.decisions WHERE lead_id = ANY($1::text[])",
        list(lead_ids),
    )
    found: dict[str, dict[str, DecisionRow]] = {lead_id: {} for lead_id in lead_ids}
    for row in rows:
        decision = decision_of(row)
        found.setdefault(decision.lead_id, {})[decision.decision_id] = decision
    return found


async def stored_feedback(session: AsyncSession, feedback_ids: Sequence[str]) -> set[str]:
    """Which of `feedback_ids` were applied before (a CRM's report sent twice counts once)."""
    rows = await fetch(
        session,
        "SELECT feedback_id FROM console.feedback WHERE feedback_id = ANY($1::text[])",
        list(feedback_ids),
    )
    return {row["feedback_id"] for row in rows}


async def search_leads(
    session: AsyncSession, *, lead_id: str, email: str, pattern: str, limit: int
) -> list[LeadRecord]:
    """Leads with this id or email first, then those whose search text matches the LIKE
    `pattern` (trigram index), newest stage change first."""
    rows = await fetch(
        session,
        f"SELECT {LEAD_COLUMNS} FROM console.leads"
        " WHERE lead_id = $1 OR email = $2 OR search LIKE $3"
        " ORDER BY (lead_id = $1 OR email = $2) DESC, stage_at DESC LIMIT $4",
        lead_id,
        email,
        pattern,
        limit,
    )
    return [record_of(row) for row in rows]


async def lead_by_id_or_email(session: AsyncSession, key: str) -> LeadRecord | None:
    rows = await fetch(
        session,
        f"SELECT {LEAD_COLUMNS} FROM console.leads WHERE lead_id = $1 OR email = lower($1)"
        " ORDER BY lead_id = $1 DESC LIMIT 1",
        key,
    )
    return record_of(rows[0]) if rows else None


@dataclass(frozen=True)
class StoredFeedback:
    lead_id: str
    feedback: CrmFeedback


def _stage_change_row(change: LifecycleChanged) -> dict[str, Any]:
    return {
        "transition_id": change.transition_id,
        "lead_id": change.lead_id,
        "at": change.at,
        "from_stage": change.from_stage.value,
        "to_stage": change.to_stage.value,
        "reason": change.reason,
        "by_sales": change.by_sales,
        "skipped": [stage.value for stage in change.skipped_stages],
        "score": change.score.model_dump(mode="json"),
    }


def _decision_row(row: DecisionRow) -> dict[str, Any]:
    return {
        "decision_id": row.decision_id,
        "lead_id": row.lead_id,
        "route": row.route,
        "team": row.team,
        "rep": row.rep,
        "rep_name": row.rep_name,
        "target": row.target,
        "strategy": row.strategy,
        "reasons": list(row.reasons),
        "supersedes": row.supersedes,
        "received_at": row.received_at,
        "decided_at": row.decided_at,
        "sla_due_at": row.sla_due_at,
        "speed_ms": row.speed_ms,
        "queued": row.queued,
        "accepted_at": row.accepted_at,
        "closed_at": row.closed_at,
        "closed_reason": row.closed_reason,
    }


def _dimension_fields(dims: Any) -> dict[str, str]:
    return {
        "source": dims.source,
        "import_list": dims.import_list,
        "campaign": dims.campaign,
        "country": dims.country,
        "grade": dims.grade,
    }


def _funnel_rows(share: Share) -> list[dict[str, Any]]:
    keys = sorted(set(share.now) | set(share.reached))
    return [
        {
            "cohort_day": day,
            **_dimension_fields(dims),
            "stage": stage.value,
            "now": share.now.get((day, dims, stage), 0),
            "reached": share.reached.get((day, dims, stage), 0),
        }
        for day, dims, stage in keys
    ]


def _duration_rows(share: Share) -> list[dict[str, Any]]:
    return [
        {
            "cohort_day": day,
            **_dimension_fields(dims),
            "stage": stage.value,
            "bucket": bucket,
            "leads": count,
        }
        for (day, dims, stage, bucket), count in sorted(share.durations.items())
    ]


def _flow_rows(share: Share) -> list[dict[str, Any]]:
    keys = sorted(set(share.entered) | set(share.exited))
    return [
        {
            "day": day,
            **_dimension_fields(dims),
            "stage": stage.value,
            "entered": share.entered.get((day, dims, stage), 0),
            "exited": share.exited.get((day, dims, stage), 0),
        }
        for day, dims, stage in keys
    ]


def _rollups(share: Share) -> tuple[list[dict[str, Any]], ...]:
    """The counters without dimensions (per day) and without day (per dimensions): rows for
    `funnel_days`, `stage_duration_days`, `stage_flow_days` and `stage_now`, in key order."""
    days: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for (day, _, stage), count in share.now.items():
        days[(day, stage.value)][0] += count
    for (day, _, stage), count in share.reached.items():
        days[(day, stage.value)][1] += count
    durations: dict[tuple[Any, ...], int] = defaultdict(int)
    for (day, _, stage, bucket), count in share.durations.items():
        durations[(day, stage.value, bucket)] += count
    flows: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for (day, _, stage), count in share.entered.items():
        flows[(day, stage.value)][0] += count
    for (day, _, stage), count in share.exited.items():
        flows[(day, stage.value)][1] += count
    now: dict[tuple[Any, ...], int] = defaultdict(int)
    for (_, dims, stage), count in share.now.items():
        now[(*_dimension_fields(dims).values(), stage.value)] += count
    return (
        [{"cohort_day": d, "stage": s, "now": n, "reached": r}
         for (d, s), (n, r) in sorted(days.items())],
        [{"cohort_day": d, "stage": s, "bucket": b, "leads": n}
         for (d, s, b), n in sorted(durations.items())],
        [{"day": d, "stage": s, "entered": i, "exited": o}
         for (d, s), (i, o) in sorted(flows.items())],
        [dict(zip(_NOW_COLUMNS, (*key, n), strict=True)) for key, n in sorted(now.items())],
    )  # fmt: skip


_NOW_COLUMNS = ("source", "import_list", "campaign", "country", "grade", "stage", "leads")


def _speed_rows(tally: SpeedTally) -> tuple[list[dict[str, Any]], ...]:
    """Rows for `speed` (per day, team and rep), `speed_days` (per day) and `speed_months`
    (per month, team and rep), in key order."""
    days: dict[tuple[Any, ...], int] = defaultdict(int)
    months: dict[tuple[Any, ...], int] = defaultdict(int)
    for (day, team, rep, measure, bucket), n in tally.speed.items():
        days[(day, measure, bucket)] += n
        months[(day.replace(day=1), team, rep, measure, bucket)] += n
    return (
        [{"day": day, "team": team, "rep": rep, "measure": measure, "bucket": bucket, "leads": n}
         for (day, team, rep, measure, bucket), n in sorted(tally.speed.items())],
        [{"day": day, "measure": measure, "bucket": bucket, "leads": n}
         for (day, measure, bucket), n in sorted(days.items())],
        [{"month": month, "team": team, "rep": rep, "measure": measure, "bucket": bucket,
          "leads": n}
         for (month, team, rep, measure, bucket), n in sorted(months.items())],
    )  # fmt: skip


def _sla_rows(tally: SpeedTally) -> list[dict[str, Any]]:
    return [
        {"day": day, "team": team, "rep": rep, **counts}
        for (day, team, rep), counts in sorted(tally.sla.items())
    ]


async def store_batch(
    session: AsyncSession,
    *,
    leads: Iterable[LeadRecord],
    stage_changes: Iterable[LifecycleChanged],
    decisions: Iterable[DecisionRow],
    feedback: Iterable[StoredFeedback],
    reps: Iterable[tuple[str, str, str]],
    share: Share,
    tally: SpeedTally,
) -> None:
    """Write what a batch changed, in one statement: the leads' records, their new stage
    changes, decisions (new or changed) and CRM reports, the reps' names (rep, name, team), and
    the counters to add."""
    speed, speed_days, speed_months = _speed_rows(tally)
    await execute(
        session,
        """
        WITH leads AS (
            INSERT INTO console.leads (lead_id, created_at, stage, stage_at, moves, email, name,
                                       company, title, country, source, import_list, campaign,
                                       score, score_at, likelihood)
            SELECT lead_id, created_at, stage, stage_at, moves, email, name, company, title,
                   country, source, import_list, campaign, score, score_at, likelihood
              FROM jsonb_populate_recordset(NULL::console.leads, $1::jsonb)
            ON CONFLICT (lead_id) DO UPDATE
               SET created_at = EXCLUDED.created_at, stage = EXCLUDED.stage,
                   stage_at = EXCLUDED.stage_at, moves = EXCLUDED.moves,
                   email = EXCLUDED.email, name = EXCLUDED.name, company = EXCLUDED.company,
                   title = EXCLUDED.title, country = EXCLUDED.country,
                   source = EXCLUDED.source, import_list = EXCLUDED.import_list,
                   campaign = EXCLUDED.campaign, score = EXCLUDED.score,
                   score_at = EXCLUDED.score_at, likelihood = EXCLUDED.likelihood
        ), stage_changes AS (
            INSERT INTO console.stage_changes
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_changes, $2::jsonb)
            ON CONFLICT (transition_id) DO NOTHING
        ), decisions AS (
            INSERT INTO console.decisions
            SELECT * FROM jsonb_populate_recordset(NULL::console.decisions, $3::jsonb)
            ON CONFLICT (decision_id) DO UPDATE
               SET accepted_at = EXCLUDED.accepted_at, closed_at = EXCLUDED.closed_at,
                   closed_reason = EXCLUDED.closed_reason
        ), feedback AS (
            INSERT INTO console.feedback
            SELECT * FROM jsonb_populate_recordset(NULL::console.feedback, $4::jsonb)
            ON CONFLICT (feedback_id) DO NOTHING
        ), reps AS (
            INSERT INTO console.reps
            SELECT * FROM jsonb_populate_recordset(NULL::console.reps, $5::jsonb)
            ON CONFLICT (rep) DO UPDATE SET name = EXCLUDED.name, team = EXCLUDED.team
        ), funnel AS (
            INSERT INTO console.funnel
            SELECT * FROM jsonb_populate_recordset(NULL::console.funnel, $6::jsonb)
            ON CONFLICT (cohort_day, source, import_list, campaign, country, grade, stage)
            DO UPDATE SET now = console.funnel.now + EXCLUDED.now,
                          reached = console.funnel.reached + EXCLUDED.reached
        ), durations AS (
            INSERT INTO console.stage_durations
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_durations, $7::jsonb)
            ON CONFLICT (cohort_day, source, import_list, campaign, country, grade, stage, bucket)
            DO UPDATE SET leads = console.stage_durations.leads + EXCLUDED.leads
        ), flows AS (
            INSERT INTO console.stage_flows
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_flows, $8::jsonb)
            ON CONFLICT (day, source, import_list, campaign, country, grade, stage)
            DO UPDATE SET entered = console.stage_flows.entered + EXCLUDED.entered,
                          exited = console.stage_flows.exited + EXCLUDED.exited
        ), dimension_values AS (
            INSERT INTO console.dimension_values (dimension, value)
            SELECT DISTINCT dimension, value
              FROM jsonb_populate_recordset(NULL::console.funnel, $6::jsonb) AS row,
                   LATERAL (VALUES ('source', row.source), ('import_list', row.import_list),
                                   ('campaign', row.campaign), ('country', row.country),
                                   ('grade', row.grade)) AS pair(dimension, value)
             WHERE value <> ''
            ON CONFLICT DO NOTHING
        ), funnel_days AS (
            INSERT INTO console.funnel_days
            SELECT * FROM jsonb_populate_recordset(NULL::console.funnel_days, $11::jsonb)
            ON CONFLICT (cohort_day, stage)
            DO UPDATE SET now = console.funnel_days.now + EXCLUDED.now,
                          reached = console.funnel_days.reached + EXCLUDED.reached
        ), duration_days AS (
            INSERT INTO console.stage_duration_days
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_duration_days, $12::jsonb)
            ON CONFLICT (cohort_day, stage, bucket)
            DO UPDATE SET leads = console.stage_duration_days.leads + EXCLUDED.leads
        ), flow_days AS (
            INSERT INTO console.stage_flow_days
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_flow_days, $13::jsonb)
            ON CONFLICT (day, stage)
            DO UPDATE SET entered = console.stage_flow_days.entered + EXCLUDED.entered,
                          exited = console.stage_flow_days.exited + EXCLUDED.exited
        ), stage_now AS (
            INSERT INTO console.stage_now
            SELECT * FROM jsonb_populate_recordset(NULL::console.stage_now, $14::jsonb)
            ON CONFLICT (source, import_list, campaign, country, grade, stage)
            DO UPDATE SET leads = console.stage_now.leads + EXCLUDED.leads
        ), speed AS (
            INSERT INTO console.speed
            SELECT * FROM jsonb_populate_recordset(NULL::console.speed, $9::jsonb)
            ON CONFLICT (day, team, rep, measure, bucket)
            DO UPDATE SET leads = console.speed.leads + EXCLUDED.leads
        ), speed_days AS (
            INSERT INTO console.speed_days
            SELECT * FROM jsonb_populate_recordset(NULL::console.speed_days, $15::jsonb)
            ON CONFLICT (day, measure, bucket)
            DO UPDATE SET leads = console.speed_days.leads + EXCLUDED.leads
        ), speed_months AS (
            INSERT INTO console.speed_months
            SELECT * FROM jsonb_populate_recordset(NULL::console.speed_months, $16::jsonb)
            ON CONFLICT (month, team, rep, measure, bucket)
            DO UPDATE SET leads = console.speed_months.leads + EXCLUDED.leads
        )
        INSERT INTO console.sla_outcomes
        SELECT * FROM jsonb_populate_recordset(NULL::console.sla_outcomes, $10::jsonb)
        ON CONFLICT (day, team, rep) DO UPDATE
           SET met = console.sla_outcomes.met + EXCLUDED.met,
               breached = console.sla_outcomes.breached + EXCLUDED.breached,
               reassigned = console.sla_outcomes.reassigned + EXCLUDED.reassigned,
               escalated = console.sla_outcomes.escalated + EXCLUDED.escalated
        """,
        json_document([_lead_row(record) for record in sorted(leads, key=_lead_id)]),
        json_document([_stage_change_row(change) for change in stage_changes]),
        json_document([_decision_row(row) for row in sorted(decisions, key=_decision_id)]),
        json_document(
            [
                {
                    "feedback_id": stored.feedback.feedback_id,
                    "lead_id": stored.lead_id,
                    "outcome": stored.feedback.outcome,
                    "reason": stored.feedback.reason,
                    "owner_id": stored.feedback.owner_id,
                    "at": stored.feedback.at,
                }
                for stored in feedback
            ]
        ),
        json_document([{"rep": r, "name": n, "team": t} for r, n, t in sorted(set(reps))]),
        json_document(_funnel_rows(share)),
        json_document(_duration_rows(share)),
        json_document(_flow_rows(share)),
        json_document(speed),
        json_document(_sla_rows(tally)),
        *(json_document(rows) for rows in _rollups(share)),
        json_document(speed_days),
        json_document(speed_months),
    )


def _lead_id(record: LeadRecord) -> str:
    return record.lead_id


def _decision_id(row: DecisionRow) -> str:
    return row.decision_id
