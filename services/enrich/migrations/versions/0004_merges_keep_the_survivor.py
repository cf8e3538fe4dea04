"""enrich: a merge keeps the survivor's picture as it was, and whether an alias joined the leads.

`surviving_lead_snapshot` lets an unmerge take back from the survivor what the merge gave it
(`services/enrich/merges.py`); merges recorded before it have none, and their unmerge leaves the
survivor's picture as it is (as it did). `aliased`: an alias call joined two known identities.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE enrich.merges
            ADD COLUMN surviving_lead_snapshot jsonb,
            ADD COLUMN aliased boolean NOT NULL DEFAULT false
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE enrich.merges DROP COLUMN surviving_lead_snapshot, DROP COLUMN aliased")
