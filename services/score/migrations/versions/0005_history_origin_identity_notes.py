"""score: where a history row came from, and the identity notes of a lead's history.

- `history.origin`: the lead a message was first counted under, when that is not the row's lead
  (a merged lead's message folded into the survivor, redirected to it late, or an anonymous
  visitor's event re-attributed to the lead it became). NULL: the lead's own. An unmerge gives
  the rows of the restored lead (and of leads merged into it) back, and both leads are scored
  again from their own messages.
- `identity_notes`: what happened to a lead's identity (merged, unmerged, an identity a guardrail
  did not link), shown by `explain` beside the stage history. No personal data: kinds and lead
  ids only.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE score.history ADD COLUMN origin text")
    op.execute(
        """
        CREATE TABLE score.identity_notes (
            lead_id text NOT NULL,
            note_id text NOT NULL,
            at timestamptz NOT NULL,
            what text NOT NULL,
            detail text NOT NULL,
            other_lead_id text,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (lead_id, note_id)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE score.identity_notes")
    op.execute("ALTER TABLE score.history DROP COLUMN origin")
