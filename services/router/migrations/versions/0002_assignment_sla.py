"""router: assignment loads per rep and day, SLA timers and breaches, reassignment chains.

A transition may now have several decisions (the first, then one per SLA reassignment): the
first stays unique per transition; each later one `supersedes` exactly one earlier decision.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE router.decisions DROP CONSTRAINT decisions_transition_id_key")
    op.execute(
        """
        ALTER TABLE router.decisions
            ADD COLUMN supersedes text UNIQUE REFERENCES router.decisions (decision_id),
            ADD COLUMN email text,
            ADD COLUMN strategy text,
            ADD COLUMN queue text,
            ADD COLUMN teams text[] NOT NULL DEFAULT '{}',
            ADD COLUMN closed_at timestamptz,
            ADD COLUMN closed_reason text,
            ADD COLUMN next_check_at timestamptz
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX decisions_first_per_transition ON router.decisions (transition_id)"
        " WHERE supersedes IS NULL"
    )
    op.execute("CREATE INDEX decisions_transition_idx ON router.decisions (transition_id)")
    # The SLA timer's only query: open decisions due for a check (a small, hot partial index).
    op.execute(
        "CREATE INDEX decisions_next_check_idx ON router.decisions (next_check_at)"
        " WHERE next_check_at IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX decisions_open_by_lead_idx ON router.decisions (lead_id)"
        " WHERE closed_at IS NULL"
    )
    op.execute(
        "CREATE INDEX decisions_open_by_email_idx ON router.decisions (email)"
        " WHERE closed_at IS NULL AND email IS NOT NULL"
    )
    op.execute("CREATE INDEX decisions_email_idx ON router.decisions (email)")
    op.execute(
        """
        CREATE TABLE router.rep_loads (
            rep_id text NOT NULL,
            day date NOT NULL,
            assigned integer NOT NULL,
            last_assigned_at timestamptz NOT NULL,
            PRIMARY KEY (rep_id, day)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.sla_breaches (
            decision_id text PRIMARY KEY REFERENCES router.decisions (decision_id),
            lead_id text NOT NULL,
            owner_id text,
            queue text,
            due_at timestamptz NOT NULL,
            breached_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX sla_breaches_lead_idx ON router.sla_breaches (lead_id)")
    op.execute("ALTER TABLE router.suppressions ADD COLUMN stage text, ADD COLUMN email text")
    op.execute("CREATE INDEX suppressions_lead_idx ON router.suppressions (lead_id)")
    op.execute("CREATE INDEX suppressions_email_idx ON router.suppressions (email)")
    op.execute("DROP TABLE router.team_turns")


def downgrade() -> None:
    op.execute("DROP SCHEMA router CASCADE")
