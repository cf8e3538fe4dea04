"""router: a decision's personal parts are kept for a time (issue 21, "Keep only what is needed").

Housekeeping (`services/router/housekeeping.py`) scrubs the personal parts of decisions decided,
suppressions recorded and simulations started before `LEADFLOW_ROUTER_DECISION_PAYLOAD_RETENTION_DAYS`
(90); the rows stay.

- `decisions.scrubbed_at`, `suppressions.scrubbed_at`: when housekeeping scrubbed the row (NULL:
  its personal parts are still there). A marker of its own, not "email IS NULL": a lead without
  an email still has a name, a company and reasons to scrub, and a scrubbed row must never be
  read again.
- `decisions_unscrubbed_idx`, `suppressions_unscrubbed_idx`: the rows not scrubbed yet, by time
  (`decided_at`, `recorded_at`): what housekeeping reads, oldest first, a bounded batch at a
  time. Partial: a row leaves the index when it is scrubbed, so the index holds about one
  retention period of rows (not the whole history), a round never reads a scrubbed row again,
  and reading the next batch costs the same after years as on the first day. (The existing
  indexes do not serve: `decisions_lead_idx` leads with the lead id, `decisions_sdr_first_idx`
  holds only first sdr decisions, whether scrubbed or not.) On the hot path: an insert (and an
  update that is not HOT: a decision closed, an SLA check rescheduled) adds one entry more, at
  the index's right-hand end (times grow); neither column changes on the hot path, so no
  update that was HOT stops being one.
- `simulations_named_examples_idx`: routing simulations whose stored examples still carry an
  email, by start time: the same for `router.simulations` (a row per simulation run).

The columns come first (`ALTER TABLE ... ADD COLUMN` is instant: no default, no rewrite), then
the indexes are built concurrently (`shared.migrations.create_index_concurrently`): each reads
its table once while decisions go on being written.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from shared.migrations import create_index_concurrently

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAMED_EXAMPLES = "result @? '$.changes[*].email ? (@ != null)'"
"""A simulation result whose examples (`changes`) still name a lead by email (housekeeping's
predicate is this same text, so the planner matches it to the partial index)."""


def upgrade() -> None:
    op.execute("ALTER TABLE router.decisions ADD COLUMN scrubbed_at timestamptz")
    op.execute("ALTER TABLE router.suppressions ADD COLUMN scrubbed_at timestamptz")
    create_index_concurrently(
        "decisions_unscrubbed_idx",
        "ON router.decisions (decided_at) WHERE scrubbed_at IS NULL",
        schema="router",
    )
    create_index_concurrently(
        "suppressions_unscrubbed_idx",
        "ON router.suppressions (recorded_at) WHERE scrubbed_at IS NULL",
        schema="router",
    )
    create_index_concurrently(
        "simulations_named_examples_idx",
        f"ON router.simulations (started_at) WHERE {NAMED_EXAMPLES}",
        schema="router",
    )


def downgrade() -> None:
    op.execute("DROP INDEX router.simulations_named_examples_idx")
    op.execute("DROP INDEX router.suppressions_unscrubbed_idx")
    op.execute("DROP INDEX router.decisions_unscrubbed_idx")
    op.execute("ALTER TABLE router.suppressions DROP COLUMN scrubbed_at")
    op.execute("ALTER TABLE router.decisions DROP COLUMN scrubbed_at")
