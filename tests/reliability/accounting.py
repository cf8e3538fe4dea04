"""After a run: was every acknowledged event handled exactly once, did every MQL get exactly one
SDR decision, and are the dead-letter topics empty? Read from the services' own tables and, with
an independent client, from the topics.

- processed: acknowledged messageIds in score's history (score keeps one row per lead and
  scored message; that history is what the ledger's points are computed from and replayed from).
- duplicates: acknowledged messageIds scored more than once (several history rows of live leads,
  or the same rule's points for one message twice in the ledger). A merged anonymous lead keeps
  its own history rows, inert, for an unmerge to give back: they count for nobody.
- lost: acknowledged messageIds that enrich never saw or score never scored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg

from shared.topics import ALL_TOPICS, ROUTING_SDR
from tests.fixtures.load import LoadReport
from tests.fixtures.pipeline import Pipeline, Record


@dataclass(frozen=True)
class Accounting:
    sent: int
    acknowledged: int
    processed: int
    duplicates: int
    lost: int
    enrich_missing: int
    mql_leads: int
    acknowledged_mql_not_mql: int
    sdr_decisions: int
    leads_without_one_decision: int
    dead_letters: int
    unacknowledged_processed: int = 0  # sent, no 200 (ingest killed mid-call), yet produced
    duplicate_rows: tuple[str, ...] = ()  # score's rows of each duplicated message, for a report

    def table(self, title: str) -> str:
        rows = [
            ("sent", self.sent),
            ("acknowledged (HTTP 200)", self.acknowledged),
            ("processed (scored once)", self.processed),
            ("duplicates", self.duplicates),
            ("lost", self.lost),
            ("  of which never enriched", self.enrich_missing),
            ("not acknowledged, processed anyway", self.unacknowledged_processed),
            ("leads that crossed MQL", self.mql_leads),
            ("  acknowledged buyers not MQL", self.acknowledged_mql_not_mql),
            ("SDR decisions", self.sdr_decisions),
            ("  MQLs without exactly one", self.leads_without_one_decision),
            ("dead letters", self.dead_letters),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [title, "-" * (width + 10)]
        lines += [f"{name:<{width}}  {value:>8}" for name, value in rows]
        return "\n".join(lines)


async def scored_count(db: asyncpg.Connection, ids: list[str]) -> int:
    return int(
        await db.fetchval(
            "SELECT count(DISTINCT message_id) FROM score.history WHERE message_id = ANY($1)", ids
        )
    )


async def wait_until_drained(
    db: asyncpg.Connection, report: LoadReport, *, timeout_s: float = 240
) -> None:
    """Until every acknowledged event is scored and every MQL decided, or `timeout_s`."""
    ids = sorted(report.acknowledged)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        scored = await scored_count(db, ids)
        undecided = await db.fetchval(
            """
            SELECT count(*) FROM score.leads l
            WHERE l.stage = 'mql' AND NOT EXISTS (
                SELECT 1 FROM router.decisions d WHERE d.lead_id = l.lead_id AND d.route = 'sdr')
            """
        )
        if scored == len(ids) and undecided == 0:
            return
        await asyncio.sleep(1)


async def account(
    db: asyncpg.Connection,
    pipeline: Pipeline,
    report: LoadReport,
    *,
    erased: frozenset[str] = frozenset(),
) -> Accounting:
    """`erased`: leads erased during the run, left out of the decisions' count (their decisions
    stay on the append-only topic while the router has forgotten them)."""
    ids = sorted(report.acknowledged)
    rows_per_message = {
        r["message_id"]: r["n"]
        for r in await db.fetch(
            "SELECT item.message_id, count(*) AS n FROM score.history AS item "
            "LEFT JOIN score.leads AS lead USING (lead_id) "
            "WHERE item.message_id = ANY($1) AND lead.merged_into IS NULL "
            "GROUP BY item.message_id",
            ids,
        )
    }
    ledger_doubles = await db.fetchval(
        """
        SELECT count(DISTINCT message_id) FROM (
            SELECT message_id FROM score.ledger WHERE message_id = ANY($1)
            GROUP BY message_id, rule_id HAVING count(*) > 1) d
        """,
        ids,
    )
    enriched = {
        r["message_id"]
        for r in await db.fetch(
            "SELECT message_id FROM enrich.seen_messages WHERE message_id = ANY($1)", ids
        )
    }
    duplicates = sum(1 for n in rows_per_message.values() if n > 1) + int(ledger_doubles)
    duplicate_rows = await _duplicate_rows(db, ids) if duplicates else ()

    mql_leads = {
        r["lead_id"]
        for r in await db.fetch(
            "SELECT DISTINCT lead_id FROM score.stage_changes WHERE to_stage = 'mql'"
        )
    }
    buyer_stages = {
        r["value"]: r["stage"]
        for r in await db.fetch(
            """
            SELECT i.value, l.stage FROM enrich.identities i
            JOIN score.leads l ON l.lead_id = i.lead_id
            WHERE i.kind = 'user_id' AND i.value = ANY($1)
            """,
            sorted(report.acknowledged_mql_users),
        )
    }
    not_mql = sum(1 for u in report.acknowledged_mql_users if buyer_stages.get(u) != "mql")

    decisions = Counter(
        r["lead_id"]
        for r in await db.fetch("SELECT lead_id FROM router.decisions WHERE route = 'sdr'")
    )
    on_topic = await pipeline.read_all(ROUTING_SDR.full_name(pipeline.prefix))
    decision_ids_on_topic: dict[str, set[str]] = {}
    for record in on_topic:
        value = record.json()
        decision_ids_on_topic.setdefault(value["lead_id"], set()).add(value["decision_id"])
    without_one = {
        lead
        for lead in (mql_leads | set(decisions) | set(decision_ids_on_topic)) - erased
        if decisions[lead] != 1 or len(decision_ids_on_topic.get(lead, ())) != 1
    }
    letters = await dead_letters(pipeline)
    unacknowledged = sorted(report.sent - report.acknowledged)
    return Accounting(
        sent=len(report.sent),
        acknowledged=len(ids),
        processed=sum(1 for n in rows_per_message.values() if n == 1),
        duplicates=duplicates,
        lost=len(ids) - len(rows_per_message),
        enrich_missing=len(set(ids) - enriched),
        mql_leads=len(mql_leads),
        acknowledged_mql_not_mql=not_mql,
        sdr_decisions=sum(decisions.values()),
        leads_without_one_decision=len(without_one),
        dead_letters=sum(len(records) for records in letters.values()),
        duplicate_rows=duplicate_rows,
        unacknowledged_processed=await scored_count(db, unacknowledged),
    )


async def _duplicate_rows(db: asyncpg.Connection, ids: list[str]) -> tuple[str, ...]:
    rows = await db.fetch(
        """
        WITH twice AS (
            SELECT h.message_id FROM score.history h LEFT JOIN score.leads l USING (lead_id)
            WHERE h.message_id = ANY($1) AND l.merged_into IS NULL
            GROUP BY h.message_id HAVING count(*) > 1
            UNION
            SELECT message_id FROM score.ledger WHERE message_id = ANY($1)
            GROUP BY message_id, rule_id HAVING count(*) > 1)
        SELECT 'history' AS t, h.message_id, h.lead_id, h.at::text AS at, h.behaviour::text AS x,
               l.merged_into, l.stage
        FROM score.history h JOIN twice USING (message_id)
        LEFT JOIN score.leads l USING (lead_id)
        UNION ALL
        SELECT 'ledger', g.message_id, g.lead_id, g.event_time::text,
               g.rule_id || ' ' || g.points, l.merged_into, l.stage
        FROM score.ledger g JOIN twice USING (message_id)
        LEFT JOIN score.leads l USING (lead_id)
        ORDER BY 2, 1, 3
        """,
        ids,
    )
    merges = await db.fetch(
        "SELECT surviving_lead_id, merged_lead_id, reason, history_replayed FROM enrich.merges"
    )
    leads = {r["lead_id"] for r in rows}
    related = [
        f"merge {m['merged_lead_id']} -> {m['surviving_lead_id']} ({m['reason']}, "
        f"replayed={m['history_replayed']})"
        for m in merges
        if {m["merged_lead_id"], m["surviving_lead_id"]} & leads
    ]
    return tuple(" | ".join(str(v) for v in r.values()) for r in rows) + tuple(related)


async def dead_letters(pipeline: Pipeline) -> dict[str, list[Record]]:
    """Everything on every dead-letter topic of the pipeline's prefix."""
    names = [topic.dlq_name(pipeline.prefix) for topic in ALL_TOPICS]
    found = await asyncio.gather(*(pipeline.read_all(name, settle_s=3) for name in names))
    return dict(zip(names, found, strict=True))
