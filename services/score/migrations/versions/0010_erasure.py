"""score: a person's erasure (`privacy.erasures`).

- `erased_leads` (`shared.privacy.erased_leads_ddl`): the SHA-256 of each lead id score erased,
  so that a message about one arriving after its erasure is dropped instead of creating the
  lead again.
- `history_origin_idx`: the history rows whose `origin` is a given lead (messages of a lead
  counted under another one), which an erasure deletes with the lead's own. Partial: most rows
  have no origin. Every other table score erases from is read by lead id through an index it
  has (the primary keys of leads, ledger, history and identity_notes, `stage_changes_lead_idx`,
  `feedback_lead_idx`).

Revision ID: 0010
Revises: 0009
"""

from alembic import op

from shared.migrations import create_index_concurrently
from shared.privacy import erased_leads_ddl

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in erased_leads_ddl("score"):
        op.execute(statement)
    # score.history is live and large: built without blocking its inserts.
    create_index_concurrently(
        "history_origin_idx", "ON score.history (origin) WHERE origin IS NOT NULL", schema="score"
    )


def downgrade() -> None:
    op.execute("DROP INDEX score.history_origin_idx")
    op.execute("DROP TABLE score.erased_leads")
