"""score: the lifecycle follows what sales reports.

- `stage_changes.by_sales`, `stage_changes.skipped`: a move a CRM reported, and the stages of
  the path to customer it jumped over (a sales-sourced lead accepted from `lead` skipped mql),
  so a funnel can count sales-sourced leads apart.
- `feedback.result`: what each CRM outcome did (applied, unchanged, superseded by a later
  outcome, refused); `applied` stays, true exactly for `applied`. Before this revision an
  outcome was applied or refused. The index finds a lead's latest outcome that holds.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE score.stage_changes ADD COLUMN by_sales boolean NOT NULL DEFAULT false, "
        "ADD COLUMN skipped text[] NOT NULL DEFAULT '{}'"
    )
    op.execute("ALTER TABLE score.feedback ADD COLUMN result text")
    op.execute(
        "UPDATE score.feedback SET result = CASE WHEN applied THEN 'applied' ELSE 'refused' END"
    )
    op.execute("ALTER TABLE score.feedback ALTER COLUMN result SET NOT NULL")
    op.execute("CREATE INDEX feedback_lead_idx ON score.feedback (lead_id, at)")


def downgrade() -> None:
    op.execute("DROP INDEX score.feedback_lead_idx")
    op.execute("ALTER TABLE score.feedback DROP COLUMN result")
    op.execute("ALTER TABLE score.stage_changes DROP COLUMN skipped, DROP COLUMN by_sales")
