"""router: `router.start_batch`, a batch's first steps in one round trip.

The consumer's batches that route sdr leads used three statements before any assignment: find
the transitions already decided (and close the open decisions of the others' leads), take the
team locks, read the reps' loads. The loads must be read after the locks with a snapshot of
their own (so they see what the previous lock holders committed): a VOLATILE plpgsql function
takes a fresh snapshot for each statement it runs, so the three go in one call, in the same
order and with the same effects as the separate statements. Decided transitions are found by a
LIMIT 1 lateral per transition, a probe of the unique index whatever the table's statistics say
(`= ANY(...) AND supersedes IS NULL` was planned as a scan of every first decision on a young
table).

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


_FUNCTION = """
CREATE FUNCTION router.start_batch(
    p_transitions text[], p_leads text[], p_at timestamptz, p_reason text,
    p_team_keys text[], p_rep_ids text[], p_days date[]
) RETURNS TABLE (decided text, rep text, assigned integer, last_assigned_at timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
#variable_conflict use_column
BEGIN
    -- 1. as repository.start_transitions
    RETURN QUERY
    WITH batch AS (
        SELECT t, l FROM unnest(p_transitions, p_leads) AS b(t, l)
    ), decided AS (
        SELECT DISTINCT k.id AS transition_id
          FROM unnest(p_transitions) AS k(id)
         CROSS JOIN LATERAL (
               SELECT FROM router.decisions d
                WHERE d.transition_id = k.id AND d.supersedes IS NULL
               UNION ALL
               SELECT FROM router.suppressions s WHERE s.transition_id = k.id
               LIMIT 1) AS found
    ), closed AS (
        UPDATE router.decisions
           SET closed_at = p_at, closed_reason = p_reason, next_check_at = NULL
         WHERE closed_at IS NULL
           AND lead_id = ANY(ARRAY(SELECT l FROM batch
                                    WHERE t NOT IN (SELECT transition_id FROM decided)))
    )
    SELECT transition_id, NULL::text, NULL::integer, NULL::timestamptz FROM decided;
    -- 2. as repository.lock_teams (keys given sorted)
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest(p_team_keys) AS k;
    -- 3. as repository.get_rep_loads, with a snapshot taken after the locks
    RETURN QUERY
    SELECT NULL::text, l.rep_id, l.assigned, l.last_assigned_at
      FROM router.rep_loads l
      JOIN unnest(p_rep_ids, p_days) AS d(rep_id, day)
        ON l.rep_id = d.rep_id AND l.day = d.day;
END
$fn$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION router.start_batch(text[], text[], timestamptz, text, text[], text[], date[])"
    )
