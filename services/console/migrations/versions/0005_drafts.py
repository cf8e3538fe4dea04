"""console: drafts of scoring rules and routing, kept while an editor works on them.

A draft is the console's own state: what an editor changed, on top of which version (its
parent), the problems the owning service found the last time it was checked, and the
simulation last started for it. Versions themselves live in the owning service (score,
router); publishing a draft saves it there as a version. A draft holds no personal data but
the name of who made it. Also an index for the SDR leads of the last days per rep, which a
rules simulation shows beside the load it would move.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console.drafts (
            draft_id uuid PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('rules', 'routing')),
            parent text,
            body jsonb NOT NULL,
            problems text,
            simulation_id text,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            published_as text
        )
        """
    )
    op.execute("CREATE INDEX drafts_by_kind ON console.drafts (kind, updated_at)")
    # a simulation's SDR load beside each rep's SDR leads of the last 30 days (queries.sdr_load)
    op.execute(
        "CREATE INDEX decisions_sdr_recent_idx ON console.decisions (decided_at) "
        "WHERE route = 'sdr' AND supersedes IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX console.decisions_sdr_recent_idx")
    op.execute("DROP TABLE console.drafts")
