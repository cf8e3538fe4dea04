"""console: erasure (issue 21): the leads the console erased.

`erased_leads` (`shared.privacy.erased_leads_ddl`): the SHA-256 of each lead id the console
erased, so that a message about it arriving later is dropped instead of bringing the lead back.

No new index: an erasure finds a lead's rows by the primary key of `leads` and by
`stage_changes_lead_idx`, `decisions_lead_idx`, `feedback_lead_idx` and `audit_lead_idx`.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from shared.privacy import erased_leads_ddl

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in erased_leads_ddl("console"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE console.erased_leads")
