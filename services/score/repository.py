"""score's tables (schema `score`): leads, the points ledger, the history of scored messages,
stage changes and CRM feedback seen.

Every function takes the caller's session: the consumer runner commits effects together with
the consumed offsets. Reads for a batch are one query per table (ids as arrays), so the cost per
event stays flat however many leads there are: every read is by primary key or an index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_serializer
from sqlalchemy.ext.asyncio import AsyncSession

from services.score.engine.explain import LedgerRow, SalesLine, StageLine, state_of_rows
from services.score.engine.rescoring import HistoryItem
from services.score.engine.scoring import LedgerLine, ScoreState
from services.score.learning.activity import Activity
from services.score.learning.outcomes import SalesOutcome
from shared import advisory_locks
from shared.contracts import AccountMatch, Consent, EnrichedEvent, Firmographics, LeadProfile, Stage
from shared.db import execute, fetch, fetchrow, fetchval, json_document
from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS

SCHEMA = "score"

MAY_BE_FORGOTTEN_AFTER = timedelta(days=TOPICS_KEEP_AT_MOST_DAYS - 1)
"""A message whose event time is older than this may have lost its history row to housekeeping
(a day's margin for clocks): whether it was scored is then also asked of its lead's ledger
(`load_states_and_scored`). Messages of the last 30 days, nearly all of them, are not."""


class LeadPicture(BaseModel):
    """What score keeps of a lead's picture (`score.leads.profile`), from the last message that
    carried the lead's own: the profile, consent and account that outputs without an event at
    hand carry (`LifecycleChanged`), and the profile-side facts as JSON values (fit rules are
    skipped while they are the ones already scored under the running rules).

    Stored without the null fields of its parts (about half of a picture), which read back as
    their defaults; keys it does not know are ignored when it is read."""

    model_config = ConfigDict(frozen=True)

    profile: LeadProfile = Field(default_factory=LeadProfile)
    consent: Consent = Field(default_factory=Consent)
    account_id: str | None = None
    firmographics: Firmographics | None = None
    account: AccountMatch | None = None
    facts: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, event: EnrichedEvent, *, facts: dict[str, Any]) -> LeadPicture:
        """The picture `event` carries, with its profile-side `facts`."""
        return cls(
            profile=event.profile,
            consent=event.consent,
            account_id=event.account_id,
            firmographics=event.firmographics,
            account=event.account,
            facts=facts,
        )

    @field_serializer("profile", "consent", "firmographics", "account")
    def _without_nulls(self, part: BaseModel | None) -> dict[str, Any] | None:
        return None if part is None else part.model_dump(mode="json", exclude_none=True)


@dataclass
class LeadRow:
    """A lead as score keeps it (`picture` is the `profile` column; None: none kept yet)."""

    lead_id: str
    stage: Stage = Stage.ANONYMOUS
    identified: bool = False
    engaged: bool = False
    email: str | None = None
    fit: int = 0
    behaviour: int = 0
    total: int = 0
    grade: str = "D"
    band: int = 4
    qualifies: bool = False
    rule_version: str = ""
    as_of: datetime | None = None
    below_line_since: datetime | None = None
    profile_version: int = -1
    picture: LeadPicture | None = None
    merged_into: str | None = None
    # The live model's view of the lead (`learning`): its activity and likelihood under model
    # `model_version` (None: not kept under any; the activity is rebuilt from the history).
    model_version: str | None = None
    likelihood: float | None = None
    activity: Activity | None = None
    # Where the lead came from, kept whether or not a model is live (`engine.first_touch`: the
    # first value of each origin fact, keyed by fact; None: none known yet). Replaced when it
    # learns something, never changed in place (compared by value, as the picture).
    first_touch: dict[str, str] | None = None
    # The row as this transaction last read or wrote it (None: not known to be stored), so
    # that `store_batch` skips a lead nothing changed. The picture is compared by value: the
    # handler replaces `picture`, never changes it in place.
    stored: tuple[Any, ...] | None = field(default=None, compare=False, repr=False)

    def values(self) -> tuple[Any, ...]:
        """The stored columns, in `_LEAD_COLUMNS` order."""
        return (
            self.lead_id, self.stage, self.identified, self.engaged, self.email, self.fit,
            self.behaviour, self.total, self.grade, self.band, self.qualifies, self.rule_version,
            self.as_of, self.below_line_since, self.profile_version, self.picture,
            self.merged_into, self.model_version, self.likelihood,
            # as its JSON text: the activity changes in place, the text it was stored as not
            None if self.activity is None else orjson.dumps(self.activity.to_json()),
            self.first_touch,
        )  # fmt: skip


@dataclass(frozen=True)
class StageChange:
    transition_id: str
    lead_id: str
    from_stage: Stage
    to_stage: Stage
    reason: str
    at: datetime
    by_sales: bool = False
    skipped: tuple[Stage, ...] = ()
    rule_version: str | None = None  # the rules whose thresholds made it (None: before 0009)


_LEAD_COLUMNS = (
    "lead_id, stage, identified, engaged, email, fit, behaviour, total, grade, band, qualifies, "
    "rule_version, as_of, below_line_since, profile_version, profile, merged_into, "
    "model_version, likelihood, activity, first_touch"
)

_LEAD_KEYS = tuple(_LEAD_COLUMNS.split(", "))
_PICTURE = _LEAD_KEYS.index("profile")
_ACTIVITY = _LEAD_KEYS.index("activity")
# A lead's picture is written only when it changed (a few events of a lead in a hundred): a
# row sent without one (null) inserts an empty picture and keeps the stored one on update. The
# stored value is then carried over as it is on disk (compressed or TOASTed), instead of being
# parsed from the batch document, compressed and written again with every score change.
# Literals: SQL is assembled only from literals in the code (tests/reliability/test_security.py).
_LEAD_COLUMNS_UNSENT_PICTURE_EMPTY = (
    "lead_id, stage, identified, engaged, email, fit, behaviour, total, grade, band, qualifies, "
    "rule_version, as_of, below_line_since, profile_version, coalesce(profile, '{}'::jsonb), "
    "merged_into, model_version, likelihood, activity, first_touch"
)
_KEEP_PICTURE = "profile = coalesce(nullif(EXCLUDED.profile, '{}'::jsonb), score.leads.profile)"


async def lock_leads(session: AsyncSession, lead_ids: Iterable[str]) -> None:
    """score's lead locks (`shared.advisory_locks.lock_leads`): a batch's messages, commands
    and erasures of a lead wait for each other across replicas."""
    await advisory_locks.lock_leads(session, lead_ids, space=advisory_locks.SCORE_LEADS)


async def load_leads(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, LeadRow]:
    """The given leads, locked for this transaction (`lock_leads`, which covers ids without a
    row too, then row locks in id order)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    await lock_leads(session, ids)
    # One primary-key probe per id, rows locked in id order (see `_LEDGER_OF_IDS`).
    rows = await fetch(
        session,
        f"SELECT lead.* FROM unnest($1::text[]) AS wanted(lead_id) "
        f"CROSS JOIN LATERAL (SELECT {_LEAD_COLUMNS} FROM score.leads "
        " WHERE score.leads.lead_id = wanted.lead_id FOR UPDATE) AS lead",
        ids,
    )
    return {row["lead_id"]: _lead(row) for row in rows}


async def find_lead(session: AsyncSession, lead_id_or_email: str) -> LeadRow | None:
    """By lead id, else by email (the most recently scored lead with it), merged leads
    resolved to their survivor."""
    row = await fetchrow(
        session,
        f"SELECT {_LEAD_COLUMNS} FROM score.leads WHERE lead_id = $1 "
        "UNION ALL "
        f"(SELECT {_LEAD_COLUMNS} FROM score.leads WHERE email = lower($1) "
        " AND merged_into IS NULL ORDER BY as_of DESC NULLS LAST LIMIT 1) "
        "LIMIT 1",
        lead_id_or_email,
    )
    if row is None:
        return None
    lead = _lead(row)
    for _ in range(10):  # follow merges (a chain is short; the bound guards a cycle)
        if lead.merged_into is None:
            return lead
        found = await load_leads(session, [lead.merged_into])
        if lead.merged_into not in found:
            return lead
        lead = found[lead.merged_into]
    return lead


async def kept_pictures(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, Any]:
    """The profile-side facts of each lead's kept picture (`LeadPicture.facts`), by lead id;
    leads without one are left out (by primary key per id, as `_LEDGER_OF_IDS`)."""
    if not lead_ids:
        return {}
    rows = await fetch(
        session,
        "SELECT lead.lead_id, lead.facts FROM unnest($1::text[]) AS wanted(lead_id) "
        "CROSS JOIN LATERAL (SELECT lead_id, profile -> 'facts' AS facts FROM score.leads "
        " WHERE score.leads.lead_id = wanted.lead_id OFFSET 0) AS lead "
        "WHERE lead.facts IS NOT NULL",
        sorted(set(lead_ids)),
    )
    return {row["lead_id"]: row["facts"] for row in rows}


def _lead_rows(leads: Sequence[LeadRow]) -> list[dict[str, Any]]:
    """The rows of the leads to write (see `store_batch`), each lead's `stored` now these."""
    rows: list[dict[str, Any]] = []
    for lead in leads:
        values = lead.values()
        stored, lead.stored = lead.stored, values
        if values == stored:
            continue
        row = dict(zip(_LEAD_KEYS, values, strict=True))
        if stored is not None and stored[_PICTURE] == values[_PICTURE]:
            # The picture as stored: not sent, and the stored one kept (`_KEEP_PICTURE`).
            del row["profile"]
        elif lead.picture is None:
            row["profile"] = {}
        else:
            row["profile"] = orjson.Fragment(lead.picture.model_dump_json())
        if values[_ACTIVITY] is not None:
            row["activity"] = orjson.Fragment(values[_ACTIVITY])
        rows.append(row)
    return rows


# One statement for a batch's writes (each part a JSON document, `[]` when empty): one round
# trip instead of four. The parts are different tables, so that they run on one snapshot
# changes nothing (no FKs between them; the leads are locked by the batch). Ledger lines and
# history items come as [lead_id, {fields}] pairs, as the handler collects them. A literal:
# SQL is assembled only from literals in the code (tests/reliability/test_security.py).
_STORE_BATCH = f"""
    WITH ledger AS (
        INSERT INTO score.ledger (lead_id, message_id, rule_id, grp, kind, points, requested,
                                  reason, note, rule_version, event_time)
        SELECT pair ->> 0, line.message_id, line.rule_id, line."group", line.kind, line.points,
               line.requested, line.reason, line.note, line.rule_version, line.event_time
        FROM jsonb_array_elements($1::text::jsonb) AS pair
        CROSS JOIN LATERAL jsonb_to_record(pair -> 1) AS line(message_id text, rule_id text,
             "group" text, kind text, points integer, requested integer, reason text,
             note text, rule_version text, event_time timestamptz)
    ), history AS (
        INSERT INTO score.history (lead_id, message_id, at, behaviour, profile, facts, origin)
        SELECT pair ->> 0, item.message_id, item.at, item.behaviour, item.profile, item.facts,
               item.origin
        FROM jsonb_array_elements($2::text::jsonb) AS pair
        CROSS JOIN LATERAL jsonb_to_record(pair -> 1) AS item(message_id text,
             at timestamptz, behaviour boolean, profile boolean, facts jsonb, origin text)
    ), stages AS (
        INSERT INTO score.stage_changes (transition_id, lead_id, from_stage, to_stage, reason, at,
                                         by_sales, skipped, rule_version)
        SELECT transition_id, lead_id, from_stage, to_stage, reason, at, by_sales,
               ARRAY(SELECT jsonb_array_elements_text(skipped)), rule_version
        FROM jsonb_to_recordset($3::text::jsonb) AS change(transition_id text, lead_id text,
             from_stage text, to_stage text, reason text, at timestamptz, by_sales boolean,
             skipped jsonb, rule_version text)
        ON CONFLICT (transition_id) DO NOTHING
    )
    INSERT INTO score.leads ({_LEAD_COLUMNS}, updated_at)
    SELECT {_LEAD_COLUMNS_UNSENT_PICTURE_EMPTY}, now()
    FROM jsonb_to_recordset($4::text::jsonb) AS lead(
        lead_id text, stage text, identified boolean, engaged boolean, email text,
        fit integer, behaviour integer, total integer, grade text, band integer,
        qualifies boolean, rule_version text, as_of timestamptz,
        below_line_since timestamptz, profile_version bigint, profile jsonb,
        merged_into text, model_version text, likelihood real, activity jsonb,
        first_touch jsonb)
    ON CONFLICT (lead_id) DO UPDATE SET
        stage = EXCLUDED.stage, identified = EXCLUDED.identified,
        engaged = EXCLUDED.engaged, email = EXCLUDED.email, fit = EXCLUDED.fit,
        behaviour = EXCLUDED.behaviour, total = EXCLUDED.total, grade = EXCLUDED.grade,
        band = EXCLUDED.band, qualifies = EXCLUDED.qualifies,
        rule_version = EXCLUDED.rule_version, as_of = EXCLUDED.as_of,
        below_line_since = EXCLUDED.below_line_since,
        profile_version = EXCLUDED.profile_version, {_KEEP_PICTURE},
        model_version = EXCLUDED.model_version, likelihood = EXCLUDED.likelihood,
        activity = EXCLUDED.activity, first_touch = EXCLUDED.first_touch, updated_at = now()
"""


async def store_batch(
    session: AsyncSession,
    *,
    ledger: Sequence[tuple[str, LedgerLine]],
    history: Sequence[tuple[str, HistoryItem]],
    stage_changes: Sequence[StageChange],
    leads: Sequence[LeadRow],
) -> None:
    """Write what a batch collected, in one statement:

    - every ledger line, under its lead's id (the key (lead, message, rule) makes a second
      write of the same point impossible, whatever the caller does);
    - the history of the scored messages, under their leads' ids, in the given order;
    - the stage changes (a transition id already recorded is left as it is);
    - the leads' scores and stages, inserted or updated; a lead whose row is as this
      transaction read or last wrote it is left alone (no new row version for a redelivered
      message). `merged_into` is written only for a new row: whether a lead is merged belongs
      to `fold_merged` / `unmark_merged`, so a batch holding an older picture of a lead can
      never clear (or set) a merge mark.

    Nothing to write: no statement."""
    lead_rows = _lead_rows(leads)
    if not (ledger or history or stage_changes or lead_rows):
        return
    await execute(
        session,
        _STORE_BATCH,
        # dataclasses: objects keyed by field name; stages as their values
        json_document(ledger),
        json_document(history),
        json_document(stage_changes),
        json_document(lead_rows),
    )


# The hot-path reads by lead id go through the primary key whatever the planner believes of the
# table: a LATERAL subquery per id with OFFSET 0 (which the planner may not flatten into a join)
# is one index probe per lead. `lead_id = ANY(...)`, or a join against the ids, is planned as a
# sequential scan on a table without statistics yet (a fresh database, the first minutes of a
# deployment), and read the whole ledger on every batch.
_LEDGER_OF_IDS = """
    FROM unnest($1::text[]) AS wanted(lead_id)
    CROSS JOIN LATERAL (SELECT * FROM score.ledger
                        WHERE score.ledger.lead_id = wanted.lead_id OFFSET 0) AS line
"""


async def load_states(session: AsyncSession, lead_ids: Iterable[str]) -> dict[str, ScoreState]:
    """Each lead's engine state, `explain.state_of` its ledger, reading only the columns the
    engine needs (an id without ledger rows has the empty state)."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    return _states_of(ids, await fetch(session, _STATE_COLUMNS + _LEDGER_OF_IDS, ids))


# The ledger columns the engine's state needs (`_states_of` reads them).
_STATE_COLUMNS = (
    "SELECT line.lead_id, line.kind, line.rule_id, line.grp, line.points, line.event_time,"
    " line.message_id"
)


def _states_of(ids: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> dict[str, ScoreState]:
    """Each id's engine state from its ledger rows (`_STATE_COLUMNS`), in ledger order."""
    by_lead: dict[str, list[LedgerRow]] = {lead_id: [] for lead_id in ids}
    for row in rows:
        by_lead[row["lead_id"]].append(
            (row["kind"], row["rule_id"], row["grp"], row["points"], row["event_time"],
             row["message_id"])
        )  # fmt: skip
    return {
        lead_id: state_of_rows(sorted(lines, key=_ledger_order))
        for lead_id, lines in by_lead.items()
    }


def _ledger_order(row: LedgerRow) -> tuple[datetime, str, str]:
    """(event time, message, rule) of a `LedgerRow`: the order of a lead's awards in a state."""
    return (row[4], row[5], row[1])


async def load_states_and_scored(
    session: AsyncSession,
    lead_ids: Iterable[str],
    keys: Iterable[tuple[str, str]],
    *,
    aged: Iterable[tuple[str, str]] = (),
) -> tuple[dict[str, ScoreState], set[tuple[str, str]]]:
    """`load_states(lead_ids)` and `already_scored(keys)` in one round trip: a batch's reads
    once its leads are locked (both by primary key per id, as `_LEDGER_OF_IDS`). The scored
    pairs come back as rows without a kind (a ledger row always has one).

    `aged`: those of `keys` old enough to have lost their history row to its retention
    (`MAY_BE_FORGOTTEN_AFTER`; their leads among `lead_ids`): one of them is scored too when its
    lead's ledger has a line of it (a message scored before, its history row since deleted by
    housekeeping; without a history row, a message has ledger lines only then)."""
    ids, pairs = sorted(set(lead_ids)), sorted(set(keys))
    if not pairs:
        return await load_states(session, ids), set()
    # The scored pairs: one primary-key probe per pair (see `_LEDGER_OF_IDS`: a join is a seq
    # scan of the whole history on a table without statistics).
    rows = await fetch(
        session,
        _STATE_COLUMNS
        + _LEDGER_OF_IDS
        + """
        UNION ALL
        SELECT pair.lead_id, NULL, NULL, NULL, NULL, NULL, pair.message_id
        FROM unnest($2::text[], $3::text[]) AS pair(lead_id, message_id)
        CROSS JOIN LATERAL (SELECT 1 FROM score.history
                            WHERE score.history.lead_id = pair.lead_id
                              AND score.history.message_id = pair.message_id
                            OFFSET 0) AS scored
        """,
        ids,
        [lead_id for lead_id, _ in pairs],
        [message_id for _, message_id in pairs],
    )
    scored = {(row["lead_id"], row["message_id"]) for row in rows if row["kind"] is None}
    unsure = set(aged) - scored
    if unsure:  # (a backfill of old messages: live traffic has none)
        scored |= {
            key
            for row in rows
            if row["kind"] is not None and (key := (row["lead_id"], row["message_id"])) in unsure
        }
    states = _states_of(ids, (row for row in rows if row["kind"] is not None))
    return states, scored


async def load_ledgers(
    session: AsyncSession, lead_ids: Iterable[str]
) -> dict[str, list[LedgerLine]]:
    """Each lead's ledger lines as stored (for explanations), in ledger order."""
    ids = sorted(set(lead_ids))
    ledgers: dict[str, list[LedgerLine]] = {lead_id: [] for lead_id in ids}
    if not ids:
        return ledgers
    rows = await fetch(
        session,
        "SELECT line.lead_id, line.message_id, line.rule_id, line.grp, line.kind, line.points,"
        " line.requested, line.reason, line.note, line.rule_version, line.event_time"
        + _LEDGER_OF_IDS
        + " ORDER BY line.lead_id, line.event_time, line.message_id, line.rule_id",
        ids,
    )
    for row in rows:
        ledgers[row["lead_id"]].append(
            LedgerLine(
                message_id=row["message_id"],
                rule_id=row["rule_id"],
                group=row["grp"],
                kind=row["kind"],
                points=row["points"],
                requested=row["requested"],
                reason=row["reason"],
                note=row["note"],
                rule_version=row["rule_version"],
                event_time=row["event_time"],
            )
        )
    return ledgers


async def already_scored(
    session: AsyncSession,
    keys: Iterable[tuple[str, str]],
    *,
    aged: Iterable[tuple[str, str]] = (),
) -> set[tuple[str, str]]:
    """Which (lead_id, message_id) pairs were scored before: a replayed message counts once
    (`aged`, as for `load_states_and_scored`: asked of the ledger too, read for their leads)."""
    aged = set(aged)
    leads = {lead_id for lead_id, _ in aged}
    return (await load_states_and_scored(session, leads, keys, aged=aged))[1]


async def stage_history(session: AsyncSession, lead_id: str) -> list[StageLine]:
    rows = await fetch(
        session,
        "SELECT from_stage, to_stage, reason, at, by_sales, skipped FROM score.stage_changes "
        "WHERE lead_id = $1 ORDER BY at, recorded_at",
        lead_id,
    )
    return [
        StageLine(
            from_stage=row["from_stage"],
            to_stage=row["to_stage"],
            reason=row["reason"],
            at=row["at"],
            by_sales=row["by_sales"],
            skipped=list(row["skipped"]),
        )
        for row in rows
    ]


async def fold_merged(
    session: AsyncSession, *, survivor: str, merged: Sequence[str], history_replayed: bool
) -> None:
    """Fold merged leads into the survivor, without double counting.

    Replayed history (anonymous leads whose events enrich re-emitted under the survivor): their
    ledgers are dropped, the survivor already counted those events; their history rows stay
    (see below). Otherwise (two known
    leads) their behaviour ledger and history move to the survivor, except rows for a message
    the survivor already has; their fit rows are dropped (fit follows the survivor's profile),
    and the moved history is marked as not the survivor's picture, so a rescore replays it for
    its behaviour only, as the live path counted it, and with the lead it came from (`origin`),
    so an unmerge can give it back (`return_history`).
    """
    merged_ids = list(merged)
    # Another instance may be scoring a merged lead's first event (its partition is not ours):
    # whoever comes second sees the other's effects.
    await lock_leads(session, [survivor, *merged_ids])
    if not history_replayed:
        for table in ("ledger", "history"):
            await execute(
                session,
                f"""
                UPDATE score.{table} AS moved SET lead_id = $1
                {
                    ", profile = false, origin = coalesce(moved.origin, moved.lead_id)"
                    if table == "history"
                    else ""
                }
                WHERE moved.lead_id = ANY($2::text[])
                  {"AND moved.kind <> 'fit'" if table == "ledger" else ""}
                  AND NOT EXISTS (SELECT 1 FROM score.{table} AS kept
                                  WHERE kept.lead_id = $1 AND kept.message_id = moved.message_id)
                """,
                survivor,
                merged_ids,
            )
    # A replayed (anonymous) lead keeps its own history rows, inert while it is merged (a merged
    # lead is never scored, rescored or simulated): they are its messages with its own picture,
    # which an unmerge gives back (`return_history`); the survivor's copies carry the survivor's.
    for table in ("ledger",) if history_replayed else ("ledger", "history"):
        await execute(
            session, f"DELETE FROM score.{table} WHERE lead_id = ANY($1::text[])", merged_ids
        )
    # Upsert: a merged lead whose own events score has not seen yet (they travel on another
    # partition) is marked too, so those events are counted under the survivor when they come.
    await execute(
        session,
        """
        INSERT INTO score.leads (lead_id, stage, fit, behaviour, merged_into)
        SELECT merged_id, 'anonymous', 0, 0, $1 FROM unnest($2::text[]) AS merged_id
        ON CONFLICT (lead_id) DO UPDATE SET merged_into = EXCLUDED.merged_into,
                                           updated_at = now()
        """,
        survivor,
        merged_ids,
    )


async def return_history(session: AsyncSession, *, survivor: str, restored: str) -> None:
    """Give an unmerged lead its messages back from the survivor: every history row of
    `survivor` whose origin is `restored`, or a lead merged into it (at any depth: its merges
    still hold), goes to `restored`. A row whose origin is `restored` itself is its own again
    (origin cleared, its picture the lead's own), unless `restored` kept its own row of that
    message (an absorbed anonymous lead: the survivor's copy carried the survivor's picture),
    and then the copy is dropped. The ledgers are the caller's to replay. Run it before
    `unmark_merged`: it follows the merge marks."""
    await execute(
        session,
        """
        DELETE FROM score.history AS copy
        WHERE copy.lead_id = $1 AND copy.origin = $2
          AND EXISTS (SELECT 1 FROM score.history AS own
                      WHERE own.lead_id = $2 AND own.message_id = copy.message_id)
        """,
        survivor,
        restored,
    )
    await execute(
        session,
        """
        WITH RECURSIVE folded(lead_id) AS (
            SELECT $2::text
            UNION
            SELECT child.lead_id FROM score.leads AS child
            JOIN folded ON child.merged_into = folded.lead_id
        )
        UPDATE score.history AS item
        SET lead_id = $2, origin = nullif(item.origin, $2),
            profile = item.profile OR item.origin = $2
        WHERE item.lead_id = $1 AND item.origin IN (SELECT lead_id FROM folded)
        """,
        survivor,
        restored,
    )


async def unmark_merged(session: AsyncSession, lead_ids: Sequence[str]) -> None:
    await lock_leads(session, lead_ids)
    await execute(
        session,
        "UPDATE score.leads SET merged_into = NULL, updated_at = now() "
        "WHERE lead_id = ANY($1::text[])",
        list(lead_ids),
    )


@dataclass(frozen=True)
class IdentityNote:
    """A line of a lead's identity history (`score.identity_notes`): `what` happened
    (`merged`, `merged_into`, `unmerged`, `refused`), in words, and the other lead concerned."""

    lead_id: str
    note_id: str
    at: datetime
    what: str
    detail: str
    other_lead_id: str | None = None


async def store_identity_notes(session: AsyncSession, notes: Sequence[IdentityNote]) -> None:
    """Record the notes; a note id already recorded for its lead is left as it is."""
    if notes:
        await execute(
            session,
            """
            INSERT INTO score.identity_notes (lead_id, note_id, at, what, detail, other_lead_id)
            SELECT lead_id, note_id, at, what, detail, other_lead_id
            FROM jsonb_to_recordset($1::text::jsonb) AS note(lead_id text, note_id text,
                 at timestamptz, what text, detail text, other_lead_id text)
            ON CONFLICT (lead_id, note_id) DO NOTHING
            """,
            json_document(notes),
        )


async def identity_notes(session: AsyncSession, lead_id: str) -> list[IdentityNote]:
    rows = await fetch(
        session,
        "SELECT lead_id, note_id, at, what, detail, other_lead_id FROM score.identity_notes "
        "WHERE lead_id = $1 ORDER BY at, recorded_at, note_id",
        lead_id,
    )
    return [IdentityNote(**dict(row)) for row in rows]


async def feedback_seen(session: AsyncSession, feedback_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(feedback_ids))
    if not ids:
        return set()
    rows = await fetch(
        session, "SELECT feedback_id FROM score.feedback WHERE feedback_id = ANY($1::text[])", ids
    )
    return {row["feedback_id"] for row in rows}


async def record_feedback(
    session: AsyncSession,
    *,
    feedback_id: str,
    lead_id: str,
    outcome: str,
    result: str,
    detail: str,
    at: datetime,
) -> None:
    """Keep what a CRM outcome did (`lifecycle.SalesDecision`), whatever it was."""
    await execute(
        session,
        """
        INSERT INTO score.feedback (feedback_id, lead_id, outcome, applied, result, detail, at)
        VALUES ($1, $2, $3, $4 = 'applied', $4, $5, $6)
        ON CONFLICT (feedback_id) DO NOTHING
        """,
        feedback_id,
        lead_id,
        outcome,
        result,
        detail,
        at,
    )


async def latest_sales_outcome_at(session: AsyncSession, lead_id: str) -> datetime | None:
    """When the CRM's latest outcome that holds for the lead (applied, or confirming its stage)
    was reported; None when none does. An outcome older than it is superseded."""
    value = await fetchval(
        session,
        "SELECT max(at) FROM score.feedback "
        "WHERE lead_id = $1 AND result IN ('applied', 'unchanged')",
        lead_id,
    )
    return value if isinstance(value, datetime) else None


async def sales_history(session: AsyncSession, lead_id: str) -> list[SalesLine]:
    """Every CRM outcome reported for the lead and what it did, in the order of their times."""
    rows = await fetch(
        session,
        "SELECT outcome, result, detail, at FROM score.feedback WHERE lead_id = $1 "
        "ORDER BY at, recorded_at",
        lead_id,
    )
    return [SalesLine(**dict(row)) for row in rows]


async def mqls_to_reevaluate(
    session: AsyncSession, *, evaluated_before: datetime, limit: int
) -> list[str]:
    """MQLs not evaluated since `evaluated_before`: their decayed score may have fallen."""
    rows = await fetch(
        session,
        "SELECT lead_id FROM score.leads WHERE stage = 'mql' AND merged_into IS NULL "
        "AND as_of < $1 ORDER BY as_of LIMIT $2",
        evaluated_before,
        limit,
    )
    return [row["lead_id"] for row in rows]


async def load_histories(
    session: AsyncSession, lead_ids: Iterable[str]
) -> dict[str, list[HistoryItem]]:
    """The messages scored for each lead, in the order they were scored (in one query: the
    leads a batch rescores, a chunk of a simulation)."""
    ids = sorted(set(lead_ids))
    histories: dict[str, list[HistoryItem]] = {lead_id: [] for lead_id in ids}
    if not ids:
        return histories
    rows = await fetch(
        session,
        # by primary key per id, as `_LEDGER_OF_IDS`
        "SELECT item.lead_id, item.message_id, item.at, item.behaviour, item.profile,"
        " item.facts, item.origin FROM unnest($1::text[]) AS wanted(lead_id) CROSS JOIN LATERAL"
        " (SELECT * FROM score.history WHERE score.history.lead_id = wanted.lead_id"
        "  OFFSET 0) AS item "
        "ORDER BY item.lead_id, item.seq",
        ids,
    )
    for row in rows:
        histories[row["lead_id"]].append(
            HistoryItem(
                message_id=row["message_id"],
                at=row["at"],
                facts=row["facts"],
                behaviour=row["behaviour"],
                profile=row["profile"],
                origin=row["origin"],
            )
        )
    return histories


async def live_leads_after(
    session: AsyncSession, lead_id: str, *, limit: int
) -> list[tuple[str, Stage, bool, str | None, float | None]]:
    """Up to `limit` live (not merged) leads after `lead_id` in id order, as (lead_id, stage,
    identified, email, likelihood): keyset pages over every lead."""
    rows = await fetch(
        session,
        "SELECT lead_id, stage, identified, email, likelihood FROM score.leads "
        "WHERE merged_into IS NULL AND lead_id > $1 ORDER BY lead_id LIMIT $2",
        lead_id,
        limit,
    )
    return [
        (row["lead_id"], Stage(row["stage"]), row["identified"], row["email"], row["likelihood"])
        for row in rows
    ]


async def sample_history_facts(
    session: AsyncSession, *, rows: int
) -> list[tuple[str, dict[str, Any]]]:
    """About `rows` scored messages' (lead_id, facts), sampled by block from the whole history
    (`TABLESAMPLE SYSTEM` at the share that gives `rows` by the planner's row estimate; all
    of a small table): the cost follows `rows`, not the size of the history."""
    found = await fetch(
        session,
        """
        WITH size AS (
            SELECT greatest(reltuples, 0) AS estimate FROM pg_class
             WHERE oid = 'score.history'::regclass
        )
        SELECT lead_id, facts FROM score.history
          TABLESAMPLE SYSTEM ((SELECT CASE WHEN estimate <= $1 THEN 100
                                           ELSE 100.0 * $1 / estimate END FROM size))
         LIMIT $1
        """,
        rows,
    )
    return [(row["lead_id"], row["facts"]) for row in found]


async def count_live_leads(session: AsyncSession) -> int:
    """How many live (not merged) leads there are: what a simulation will compare."""
    count: int = await fetchval(
        session, "SELECT count(*) FROM score.leads WHERE merged_into IS NULL"
    )
    return count


async def delete_ledgers(session: AsyncSession, lead_ids: Iterable[str]) -> None:
    ids = sorted(set(lead_ids))
    if ids:
        await execute(session, "DELETE FROM score.ledger WHERE lead_id = ANY($1::text[])", ids)


Rescored = Literal["rules", "model"]


# What a rescore brings leads onto (`sweep.RescoreSweep`): the running rules, or the live model
# (identified leads only: anonymous ones get no likelihood). Each query below picks its version
# expression and the leads concerned between two literals, in place: SQL is assembled from
# literals alone. A lead with no model version reads as '', which sorts before every version
# and so falls in the lower range.


# Leads on another version are the two ranges either side of the running one in the version
# index (`leads_rule_version_idx`, `leads_model_version_idx`: (version, lead_id) over the leads
# concerned): `<>` alone would read the whole index (every lead already on it) on each call.
async def leads_on_other_version(
    session: AsyncSession,
    what: Rescored,
    *,
    version: str,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str]]:
    """Up to `limit` leads concerned scored under another version of `what`, as (version,
    lead_id) in index order after the keyset cursor `after`: cost follows `limit`, not the
    table."""
    column = "rule_version" if what == "rules" else "coalesce(model_version, '')"
    concerned = "merged_into IS NULL" + ("" if what == "rules" else " AND identified")
    above = f"AND ({column}, lead_id) > ($3, $4)" if after else ""
    ranges = [
        f"(SELECT {column} AS version, lead_id FROM score.leads WHERE {concerned} "
        f"AND {column} {side} $1 {above} ORDER BY {column}, lead_id LIMIT $2)"
        for side in ("<", ">")
    ]
    rows = await fetch(
        session,
        f"{ranges[0]} UNION ALL {ranges[1]} ORDER BY version, lead_id LIMIT $2",
        version,
        limit,
        *(after or ()),
    )
    return [(row["version"], row["lead_id"]) for row in rows]


async def count_leads_on_other_version(
    session: AsyncSession, what: Rescored, *, version: str
) -> int:
    """How many leads concerned are scored under another version of `what` (reads only
    those)."""
    column = "rule_version" if what == "rules" else "coalesce(model_version, '')"
    concerned = "merged_into IS NULL" + ("" if what == "rules" else " AND identified")
    # one range each side, as `leads_on_other_version`: an OR of the two is planned as a
    # sequential scan for the model's expression index
    count = await fetchval(
        session,
        f"SELECT (SELECT count(*) FROM score.leads WHERE {concerned} AND {column} < $1) "
        f"+ (SELECT count(*) FROM score.leads WHERE {concerned} AND {column} > $1)",
        version,
    )
    return int(count)


async def leads_still_on_other_version(
    session: AsyncSession, what: Rescored, lead_ids: Sequence[str], *, version: str
) -> list[str]:
    """Which of `lead_ids` are concerned and still on another version of `what` (by primary
    key)."""
    column = "rule_version" if what == "rules" else "coalesce(model_version, '')"
    concerned = "merged_into IS NULL" + ("" if what == "rules" else " AND identified")
    rows = await fetch(
        session,
        f"SELECT lead_id FROM score.leads WHERE lead_id = ANY($1::text[]) "
        f"AND {concerned} AND {column} <> $2 ORDER BY lead_id",
        list(lead_ids),
        version,
    )
    return [row["lead_id"] for row in rows]


def _lead(row: Mapping[str, Any]) -> LeadRow:
    """A lead from its row (`_LEAD_COLUMNS`); an empty picture is none."""
    picture = row["profile"]
    lead = LeadRow(
        lead_id=row["lead_id"],
        stage=Stage(row["stage"]),
        identified=row["identified"],
        engaged=row["engaged"],
        email=row["email"],
        fit=row["fit"],
        behaviour=row["behaviour"],
        total=row["total"],
        grade=row["grade"],
        band=row["band"],
        qualifies=row["qualifies"],
        rule_version=row["rule_version"],
        as_of=row["as_of"],
        below_line_since=row["below_line_since"],
        profile_version=row["profile_version"],
        picture=LeadPicture.model_validate(picture) if picture else None,
        merged_into=row["merged_into"],
        model_version=row["model_version"],
        likelihood=row["likelihood"],
        activity=Activity.from_json(row["activity"]) if row["activity"] else None,
        first_touch=row["first_touch"],
    )
    lead.stored = lead.values()
    return lead


# --- learning ---------------------------------------------------------------------------


async def identified_leads_after(session: AsyncSession, lead_id: str, *, limit: int) -> list[str]:
    """Up to `limit` live identified leads after `lead_id` in id order (the leads a model
    learns from: an anonymous visitor is no lead sales could win)."""
    rows = await fetch(
        session,
        "SELECT lead_id FROM score.leads WHERE merged_into IS NULL AND identified "
        "AND lead_id > $1 ORDER BY lead_id LIMIT $2",
        lead_id,
        limit,
    )
    return [row["lead_id"] for row in rows]


async def sales_outcomes(
    session: AsyncSession, lead_ids: Sequence[str]
) -> dict[str, list[SalesOutcome]]:
    """Each lead's CRM outcomes as recorded (what the lifecycle made of each), by time."""
    rows = await fetch(
        session,
        "SELECT lead_id, outcome, result, at FROM score.feedback "
        "WHERE lead_id = ANY($1::text[]) ORDER BY lead_id, at, recorded_at",
        list(lead_ids),
    )
    outcomes: dict[str, list[SalesOutcome]] = {}
    for row in rows:
        outcomes.setdefault(row["lead_id"], []).append(
            SalesOutcome(row["outcome"], row["result"], row["at"])
        )
    return outcomes


async def first_mql_times(session: AsyncSession, lead_ids: Sequence[str]) -> dict[str, datetime]:
    """When each lead first became an MQL (leads that never did are absent)."""
    rows = await fetch(
        session,
        "SELECT lead_id, min(at) AS at FROM score.stage_changes "
        "WHERE lead_id = ANY($1::text[]) AND to_stage = 'mql' GROUP BY lead_id",
        list(lead_ids),
    )
    return {row["lead_id"]: row["at"] for row in rows}


@dataclass(frozen=True)
class Training:
    """One training run (`score.trainings`)."""

    run_id: str
    requested_by: str
    started_at: datetime
    finished_at: datetime | None
    status: str  # running, stored, refused, failed
    message: str
    version: str | None


async def start_training(session: AsyncSession, *, run_id: str, requested_by: str) -> None:
    await execute(
        session,
        "INSERT INTO score.trainings (run_id, requested_by, status) VALUES ($1, $2, 'running')",
        run_id,
        requested_by,
    )


async def finish_training(
    session: AsyncSession, *, run_id: str, status: str, message: str, version: str | None = None
) -> None:
    await execute(
        session,
        "UPDATE score.trainings SET status = $2, message = $3, version = $4, "
        "finished_at = now() WHERE run_id = $1",
        run_id,
        status,
        message,
        version,
    )


async def fail_training_if_running(session: AsyncSession, *, run_id: str, message: str) -> None:
    """Record a run whose process died without a word as failed (a run that recorded its end
    keeps it)."""
    await execute(
        session,
        "UPDATE score.trainings SET status = 'failed', message = $2, finished_at = now() "
        "WHERE run_id = $1 AND status = 'running'",
        run_id,
        message,
    )


async def trainings(session: AsyncSession, *, limit: int) -> list[Training]:
    """The latest training runs, newest first."""
    rows = await fetch(
        session,
        "SELECT run_id, requested_by, started_at, finished_at, status, message, version "
        "FROM score.trainings ORDER BY started_at DESC, run_id LIMIT $1",
        limit,
    )
    return [Training(**dict(row)) for row in rows]


async def training_running_since(session: AsyncSession, since: datetime) -> str | None:
    """The id of a run still running that started after `since` (an older one is taken for
    dead: its process went away without a word)."""
    value = await fetchval(
        session,
        "SELECT run_id FROM score.trainings WHERE status = 'running' AND started_at > $1 "
        "ORDER BY started_at DESC LIMIT 1",
        since,
    )
    return value if isinstance(value, str) else None
