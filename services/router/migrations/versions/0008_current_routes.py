"""router: one current route per lead, per-lead sequences, withdrawals, nurture that settles
(issue 22, "One current route per lead, in an order a CRM can trust").

- `routes`: a row per lead the router ever sent something about: the last `sequence` it gave
  the lead (every message on routing.sdr, routing.nurture and routing.withdrawals takes the
  next), and its current route (`decision_id`, `route`; NULL: none). Read under the lead's lock
  (`start_transitions` returns the rows of its leads, in the same round trip), written with
  the batch's decisions.
- `withdrawals`: what the router withdrew (a decision at most once: keyed by it), for the lead's
  history and the erasure; the message itself went out with the batch (outbox).
- `decisions.sequence`: the sequence a decision was sent with (NULL: not sent; a nurture
  decision still settling, or cancelled by a change before it was; or a decision made before
  this release). `decisions.released_at`: when a nurture decision was sent after settling. A
  nurture decision waits on the decision timer (`next_check_at` = when it may be released, the
  column and partial index the SLA timer uses already).
- `start_transitions` and `start_batch` also return the `routes` rows of the batch's leads
  (rows with a NULL transition_id and rep_id), read in a statement after the lead locks.

Revision ID: 0008
Revises: 0007
"""

import runpy
from pathlib import Path

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_START_TRANSITIONS = """
CREATE FUNCTION router.start_transitions(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text
) RETURNS TABLE (transition_id text, erased boolean, lead_id text, sequence bigint,
                 decision_id text, route text)
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
    SELECT decided.transition_id, false, NULL::text, NULL::bigint, NULL::text, NULL::text
      FROM decided
    UNION ALL
    SELECT DISTINCT fresh.transition_id, true, NULL::text, NULL::bigint, NULL::text, NULL::text
      FROM fresh JOIN erased_lead ON erased_lead.lead_id = fresh.lead_id;
    RETURN QUERY
    SELECT NULL::text, NULL::boolean, current_route.lead_id, current_route.sequence,
           current_route.decision_id, current_route.route
      FROM router.routes AS current_route
     WHERE current_route.lead_id = ANY(p_leads);
END
$fn$
"""

_START_BATCH = """
CREATE FUNCTION router.start_batch(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text,
    p_team_keys text[], p_rep_ids text[], p_days date[]
) RETURNS TABLE (transition_id text, rep_id text, assigned integer, last_assigned_at timestamptz,
                 erased boolean, lead_id text, sequence bigint, decision_id text, route text)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT started.transition_id, NULL::text, NULL::integer, NULL::timestamptz, started.erased,
           started.lead_id, started.sequence, started.decision_id, started.route
      FROM router.start_transitions(p_transitions, p_leads, p_at, p_reason) AS started;
    RETURN QUERY
    SELECT NULL::text, team_load.rep_id, team_load.assigned, team_load.last_assigned_at,
           NULL::boolean, NULL::text, NULL::bigint, NULL::text, NULL::text
      FROM router.lock_teams_and_read_loads(p_team_keys, p_rep_ids, p_days) AS team_load;
END
$fn$
"""

_START_BATCH_SIGNATURE = (
    "router.start_batch(text[], text[], timestamptz, text, text[], text[], date[])"
)
_START_TRANSITIONS_SIGNATURE = "router.start_transitions(text[], text[], timestamptz, text)"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE router.routes (
            lead_id text PRIMARY KEY,
            sequence bigint NOT NULL CHECK (sequence >= 0),
            decision_id text,
            route text CHECK (route IN ('sdr', 'nurture')),
            changed_at timestamptz NOT NULL,
            CHECK ((decision_id IS NULL) = (route IS NULL))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.withdrawals (
            decision_id text PRIMARY KEY,
            lead_id text NOT NULL,
            route text NOT NULL,
            cause text NOT NULL,
            reason text NOT NULL,
            replaced_by text,
            sequence bigint NOT NULL,
            withdrawn_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX withdrawals_lead_idx ON router.withdrawals (lead_id)")
    op.execute("ALTER TABLE router.decisions ADD COLUMN sequence bigint")
    op.execute("ALTER TABLE router.decisions ADD COLUMN released_at timestamptz")
    # The result types change: dropped and created again (start_batch calls start_transitions).
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute(f"DROP FUNCTION {_START_TRANSITIONS_SIGNATURE}")
    op.execute(_START_TRANSITIONS)
    op.execute(_START_BATCH)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute(f"DROP FUNCTION {_START_TRANSITIONS_SIGNATURE}")
    released = runpy.run_path(str(Path(__file__).with_name("0006_erasure.py")))
    op.execute(released["_START_TRANSITIONS"])
    op.execute(released["_START_BATCH"])
    op.execute("ALTER TABLE router.decisions DROP COLUMN released_at")
    op.execute("ALTER TABLE router.decisions DROP COLUMN sequence")
    op.execute("DROP TABLE router.withdrawals, router.routes")
