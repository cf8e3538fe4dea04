"""router: erasure (issue 21): the erased leads, and a lock per lead that every batch takes.

- `erased_leads` (`shared.privacy.erased_leads_ddl`): the SHA-256 of each lead id the router
  erased, so that a message about it arriving later is dropped instead of routing it again.
- `router.lock_leads(lead ids)`: a transaction-scoped advisory lock per lead id (two-int keys
  in the router's own space, `ROUTER_LEAD_LOCKS`: apart from score's lead locks, 0x5C0E, and
  enrich's do-not-track gate, 0x0E21; the router's team locks are one-bigint keys, a space of
  their own), taken in key order, in one statement; then it answers which of the leads were
  erased, in a statement of its own (a fresh snapshot: it sees an erasure that committed while
  it waited). A row lock cannot cover a lead the router has no row for yet (its first stage
  change), and an erasure must wait for, or be waited for by, exactly that batch.
- `router.start_transitions` (every way a batch of stage changes starts calls it) now takes
  those lead locks first, then, as before, finds the transitions already decided and closes the
  open decisions of the others' leads, and also reports (`erased`) the transitions of leads
  erased by now: the leads of the undecided transitions that had no open decision to close
  (no state) are looked up in `erased_leads` (one primary-key probe each), in the statement
  after the locks. The digest is `shared.privacy.lead_id_digest`'s (SHA-256 of the id's UTF-8
  bytes). A transition already decided is never erased (an erasure deletes its decision).
- `router.start_batch` passes `erased` through (a fifth column; callers that read the first
  four by name, as the previous release does, are unaffected).

No new index: an erasure finds a lead's rows by `decisions_lead_idx`, `suppressions_lead_idx`
and `sla_breaches_lead_idx`; `simulations` holds one row per simulation run.

Revision ID: 0006
Revises: 0005
"""

import runpy
from pathlib import Path

from alembic import op

from shared.privacy import erased_leads_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ROUTER_LEAD_LOCKS = 0x7007
"""The first key of the router's lead locks (two-int advisory locks)."""

_LOCK_LEADS = f"""
CREATE FUNCTION router.lock_leads(p_leads text[]) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    PERFORM pg_advisory_xact_lock({ROUTER_LEAD_LOCKS}, lock_keys.lock_key)
       FROM (SELECT DISTINCT hashtext(lead_id) AS lock_key
               FROM unnest(p_leads) AS lead_id
              ORDER BY lock_key OFFSET 0) AS lock_keys;
    RETURN QUERY
    SELECT wanted.lead_id
      FROM (SELECT DISTINCT lead_id FROM unnest(p_leads) AS lead_id) AS wanted
     WHERE EXISTS (SELECT FROM router.erased_leads AS erasure
                    WHERE erasure.lead_digest = sha256(convert_to(wanted.lead_id, 'UTF8')));
END
$fn$
"""

_START_TRANSITIONS = """
CREATE FUNCTION router.start_transitions(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text
) RETURNS TABLE (transition_id text, erased boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM router.lock_leads(p_leads);
    RETURN QUERY
    WITH batch AS (
        SELECT batch.transition_id, batch.lead_id
          FROM unnest(p_transitions, p_leads) AS batch(transition_id, lead_id)
    ), decided AS (
        SELECT DISTINCT wanted.transition_id
          FROM unnest(p_transitions) AS wanted(transition_id)
         CROSS JOIN LATERAL (
               SELECT FROM router.decisions AS decision
                WHERE decision.transition_id = wanted.transition_id
                  AND decision.supersedes IS NULL
               UNION ALL
               SELECT FROM router.suppressions AS suppression
                WHERE suppression.transition_id = wanted.transition_id
               LIMIT 1) AS found
    ), fresh AS (
        SELECT batch.transition_id, batch.lead_id FROM batch
         WHERE batch.transition_id NOT IN (SELECT decided.transition_id FROM decided)
    ), closed AS (
        UPDATE router.decisions
           SET closed_at = p_at, closed_reason = p_reason, next_check_at = NULL
         WHERE closed_at IS NULL
           AND lead_id = ANY(ARRAY(SELECT fresh.lead_id FROM fresh))
        RETURNING router.decisions.lead_id
    ), erased_lead AS (
        SELECT stateless.lead_id
          FROM (SELECT DISTINCT fresh.lead_id FROM fresh
                 WHERE fresh.lead_id NOT IN (SELECT closed.lead_id FROM closed)) AS stateless
         WHERE EXISTS (SELECT FROM router.erased_leads AS erasure
                        WHERE erasure.lead_digest = sha256(convert_to(stateless.lead_id, 'UTF8')))
    )
    SELECT decided.transition_id, false FROM decided
    UNION ALL
    SELECT DISTINCT fresh.transition_id, true
      FROM fresh JOIN erased_lead ON erased_lead.lead_id = fresh.lead_id;
END
$fn$
"""

_START_BATCH = """
CREATE FUNCTION router.start_batch(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text,
    p_team_keys text[], p_rep_ids text[], p_days date[]
) RETURNS TABLE (transition_id text, rep_id text, assigned integer, last_assigned_at timestamptz,
                 erased boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT started.transition_id, NULL::text, NULL::integer, NULL::timestamptz, started.erased
      FROM router.start_transitions(p_transitions, p_leads, p_at, p_reason) AS started;
    RETURN QUERY
    SELECT NULL::text, team_load.rep_id, team_load.assigned, team_load.last_assigned_at,
           NULL::boolean
      FROM router.lock_teams_and_read_loads(p_team_keys, p_rep_ids, p_days) AS team_load;
END
$fn$
"""

_START_BATCH_SIGNATURE = (
    "router.start_batch(text[], text[], timestamptz, text, text[], text[], date[])"
)
_START_TRANSITIONS_SIGNATURE = "router.start_transitions(text[], text[], timestamptz, text)"


def upgrade() -> None:
    for statement in erased_leads_ddl("router"):
        op.execute(statement)
    op.execute(_LOCK_LEADS)
    # The result types change: dropped and created again (start_batch calls start_transitions).
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute(f"DROP FUNCTION {_START_TRANSITIONS_SIGNATURE}")
    op.execute(_START_TRANSITIONS)
    op.execute(_START_BATCH)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute(f"DROP FUNCTION {_START_TRANSITIONS_SIGNATURE}")
    op.execute("DROP FUNCTION router.lock_leads(text[])")
    op.execute("DROP TABLE router.erased_leads")
    # 0004's functions, as released.
    released = runpy.run_path(str(Path(__file__).with_name("0004_batch_start_once.py")))
    op.execute(released["_START_TRANSITIONS"])
    op.execute(released["_START_BATCH"])
