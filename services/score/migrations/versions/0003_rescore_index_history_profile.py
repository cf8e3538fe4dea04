"""score: an index for the rescore sweep, and whose picture a history row carries.

- `leads_rule_version_idx` (rule_version, lead_id) over live leads: the sweep finds and counts
  leads on another rules version by reading only those, after a keyset cursor, instead of
  scanning every lead each round.
- `history.profile`: false for a message that came from a merged lead (redirected to the
  survivor, or moved there by a merge); a rescore replays it for its behaviour only.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX leads_rule_version_idx ON score.leads (rule_version, lead_id) "
        "WHERE merged_into IS NULL"
    )
    op.execute("ALTER TABLE score.history ADD COLUMN profile boolean NOT NULL DEFAULT true")


def downgrade() -> None:
    op.execute("ALTER TABLE score.history DROP COLUMN profile")
    op.execute("DROP INDEX score.leads_rule_version_idx")
