"""router: a batch's start written once, as the functions every way of starting calls.

0003's `router.start_batch` held its own copy of two statements the consumer also sent on their
own, and a third copy of the "already decided" lookup lived in the statement that decides a
nurture-only batch at once. Now each step is one function, and the repository only calls them:

- `router.start_transitions`: which of a batch's transitions already have a first decision or
  a suppression (a replay must add nothing), and for the leads of the others the open decisions
  closed (a new stage supersedes the SLA of decisions made for an earlier one); one statement,
  so the lookup and the closing share a snapshot. Decided transitions are found by a LIMIT 1
  lateral per transition, a probe of the unique index whatever the table's statistics say
  (`= ANY(...) AND supersedes IS NULL` was planned as a scan of every first decision on a young
  table); the leads to close go in as one array, so the open-by-lead index is probed per lead.
- `router.lock_teams_and_read_loads`: the teams' advisory locks, one at a time in the order
  given (the caller sorts them: a consistent order cannot deadlock), then the reps' loads. A
  VOLATILE plpgsql function takes a fresh snapshot for each statement it runs, so the loads are
  read after the locks and see what the previous lock holders committed.
- `router.start_batch`: the two in one round trip, in that order (same arguments as 0003's;
  its result columns now have their full names).

Revision ID: 0004
Revises: 0003
"""

import runpy
from pathlib import Path

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


_START_TRANSITIONS = """
CREATE FUNCTION router.start_transitions(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text
) RETURNS TABLE (transition_id text)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
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
    ), closed AS (
        UPDATE router.decisions
           SET closed_at = p_at, closed_reason = p_reason, next_check_at = NULL
         WHERE closed_at IS NULL
           AND lead_id = ANY(ARRAY(SELECT batch.lead_id FROM batch
                                    WHERE batch.transition_id NOT IN
                                          (SELECT decided.transition_id FROM decided)))
    )
    SELECT decided.transition_id FROM decided;
END
$fn$
"""

_LOCK_TEAMS_AND_READ_LOADS = """
CREATE FUNCTION router.lock_teams_and_read_loads(
    p_team_keys text[], p_rep_ids text[], p_days date[]
) RETURNS TABLE (rep_id text, assigned integer, last_assigned_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(team_key, 0))
       FROM unnest(p_team_keys) AS team_key;
    RETURN QUERY
    SELECT rep_load.rep_id, rep_load.assigned, rep_load.last_assigned_at
      FROM router.rep_loads AS rep_load
      JOIN unnest(p_rep_ids, p_days) AS wanted(rep_id, day)
        ON rep_load.rep_id = wanted.rep_id AND rep_load.day = wanted.day;
END
$fn$
"""

_START_BATCH = """
CREATE FUNCTION router.start_batch(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text,
    p_team_keys text[], p_rep_ids text[], p_days date[]
) RETURNS TABLE (transition_id text, rep_id text, assigned integer, last_assigned_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT started.transition_id, NULL::text, NULL::integer, NULL::timestamptz
      FROM router.start_transitions(p_transitions, p_leads, p_at, p_reason) AS started;
    RETURN QUERY
    SELECT NULL::text, team_load.rep_id, team_load.assigned, team_load.last_assigned_at
      FROM router.lock_teams_and_read_loads(p_team_keys, p_rep_ids, p_days) AS team_load;
END
$fn$
"""

_START_BATCH_SIGNATURE = (
    "router.start_batch(text[], text[], timestamptz, text, text[], text[], date[])"
)


def upgrade() -> None:
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute(_START_TRANSITIONS)
    op.execute(_LOCK_TEAMS_AND_READ_LOADS)
    op.execute(_START_BATCH)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {_START_BATCH_SIGNATURE}")
    op.execute("DROP FUNCTION router.lock_teams_and_read_loads(text[], text[], date[])")
    op.execute("DROP FUNCTION router.start_transitions(text[], text[], timestamptz, text)")
    # 0003's own `router.start_batch`, as released.
    runpy.run_path(str(Path(__file__).with_name("0003_start_batch.py")))["upgrade"]()
