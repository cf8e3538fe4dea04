"""A person's erasure in score (`privacy.erasures`, `shared.privacy`): what goes, what stays.

score is not the analytics store (the console keeps the anonymous counts), so it deletes:

- `leads`: the leads' rows (email, picture, scores, activity, first touch);
- `ledger`: their points; and the points another lead holds for a message of theirs (a history
  row with one of them as `origin`, below);
- `history`: their scored messages (the facts of every message), and every row whose `origin`
  is one of them (a message of theirs counted under another lead);
- `stage_changes`, `feedback`, `identity_notes`: theirs.

And it anonymises what a person could be found in without being its subject:

- `simulations`: a stored simulation result lists leads by id and email (the leads that would
  become MQL or drop below the line); the erased leads' entries and ids are taken out, every
  count stays, and `ids_complete` turns false where an id was taken out (the ids no longer hold
  every lead counted).

Kept: another lead's identity notes that name an erased lead by id (a lead id names nobody
once the lead is erased), the trained models (`config_versions`, kind `model`: weights of
features seen in many leads, never a lead's id or identifying facts), the trainings (counts
and words) and rules versions. A lead's points that the deleted `origin` rows carried are
gone from its ledger; its row's score follows at its next message or rescore.

Idempotent: a second erasure of the same leads finds nothing (0 rows). The caller locks the
leads (`repository.lock_leads`) and records them (`ErasedLeads.remember`) in the same
transaction (see `handler`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import execute, fetch, fetchrow, json_document

LISTED_CHANGES = ("becoming_mql", "dropping_below_mql")
"""A simulation result's lists of leads (`rescoring.LeadChange`: id, email, scores)."""
LISTED_IDS = ("becoming_ids", "dropping_ids")
"""A simulation result's lists of lead ids."""

# One statement: every table keyed by lead, on one snapshot (distinct rows per part: the
# second ledger part deletes only lines of leads that are not erased). Each part reads by an
# index on lead_id (the primary keys of leads, ledger, history and identity_notes,
# `stage_changes_lead_idx`, `feedback_lead_idx`) or on origin (`history_origin_idx`).
_ERASE = """
    WITH leads AS (
        DELETE FROM score.leads WHERE lead_id = ANY($1::text[]) RETURNING 1
    ), history AS (
        DELETE FROM score.history
         WHERE lead_id = ANY($1::text[]) OR origin = ANY($1::text[])
        RETURNING lead_id, message_id
    ), ledger AS (
        DELETE FROM score.ledger WHERE lead_id = ANY($1::text[]) RETURNING 1
    ), carried AS (
        DELETE FROM score.ledger AS line USING history AS gone
         WHERE line.lead_id = gone.lead_id AND line.message_id = gone.message_id
           AND NOT gone.lead_id = ANY($1::text[])
        RETURNING 1
    ), stage_changes AS (
        DELETE FROM score.stage_changes WHERE lead_id = ANY($1::text[]) RETURNING 1
    ), feedback AS (
        DELETE FROM score.feedback WHERE lead_id = ANY($1::text[]) RETURNING 1
    ), identity_notes AS (
        DELETE FROM score.identity_notes WHERE lead_id = ANY($1::text[]) RETURNING 1
    )
    SELECT (SELECT count(*) FROM leads) AS leads,
           (SELECT count(*) FROM ledger) + (SELECT count(*) FROM carried) AS ledger,
           (SELECT count(*) FROM history) AS history,
           (SELECT count(*) FROM stage_changes) AS stage_changes,
           (SELECT count(*) FROM feedback) AS feedback,
           (SELECT count(*) FROM identity_notes) AS identity_notes
"""

# The simulations whose result lists one of the leads (a handful of rows: one per simulation
# run; a result lists at most `rescoring.KEPT_IDS` ids per kind). Lax JSON paths: a result
# without a list (or an older shape) matches nothing.
_LISTING = """
    SELECT id, result FROM score.simulations
     WHERE result IS NOT NULL AND EXISTS (
        SELECT 1 FROM (
            SELECT jsonb_path_query(result, '$.becoming_ids[*]')
            UNION ALL SELECT jsonb_path_query(result, '$.dropping_ids[*]')
            UNION ALL SELECT jsonb_path_query(result, '$.becoming_mql[*].lead_id')
            UNION ALL SELECT jsonb_path_query(result, '$.dropping_below_mql[*].lead_id')
        ) AS listed(lead_id)
        WHERE listed.lead_id #>> '{}' = ANY($1::text[]))
     FOR UPDATE
"""


async def erase_leads(
    session: AsyncSession, lead_ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Delete every row score keeps about `lead_ids` and take them out of the stored
    simulation results (see the module doc). Returns (rows erased per table, rows anonymised
    per table)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}, {}
    row = await fetchrow(session, _ERASE, ids)
    assert row is not None
    erased = {table: int(count) for table, count in dict(row).items()}
    scrubbed = 0
    for simulation in await fetch(session, _LISTING, ids):
        result = scrubbed_simulation(simulation["result"], set(ids))
        if result is not None:
            await execute(
                session,
                "UPDATE score.simulations SET result = $2::text::jsonb WHERE id = $1",
                simulation["id"],
                json_document(result),
            )
            scrubbed += 1
    return erased, {"simulations": scrubbed}


def scrubbed_simulation(
    result: Mapping[str, Any], lead_ids: Collection[str]
) -> dict[str, Any] | None:
    """A stored simulation result without the leads `lead_ids`: their entries in the lists of
    changes (`LISTED_CHANGES`) and their ids (`LISTED_IDS`) taken out, every count kept, and
    `ids_complete` false once an id was taken out. None when the result lists none of them.
    Keys it does not know, and lists of another shape, are left as they are."""
    scrubbed = dict(result)
    for key in LISTED_CHANGES:
        changes = result.get(key)
        if isinstance(changes, list):
            kept = [
                change
                for change in changes
                if not (isinstance(change, dict) and _listed(change.get("lead_id"), lead_ids))
            ]
            if len(kept) < len(changes):
                scrubbed[key] = kept
    for key in LISTED_IDS:
        listed = result.get(key)
        if isinstance(listed, list):
            kept = [lead_id for lead_id in listed if not _listed(lead_id, lead_ids)]
            if len(kept) < len(listed):
                scrubbed[key] = kept
                scrubbed["ids_complete"] = False
    return None if scrubbed == result else scrubbed


def _listed(lead_id: object, lead_ids: Collection[str]) -> bool:
    return isinstance(lead_id, str) and lead_id in lead_ids
