"""score: the rule engine's ledger (group, kind, requested points, reason, note), the history
of scored messages (for idempotency, rescoring and simulation), CRM feedback seen, and the lead
columns the sweep, explain and merges need.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE score.leads
            DROP COLUMN fit_rules_awarded,
            ADD COLUMN email text,
            ADD COLUMN identified boolean NOT NULL DEFAULT false,
            ADD COLUMN total integer NOT NULL DEFAULT 0,
            ADD COLUMN grade text NOT NULL DEFAULT 'D',
            ADD COLUMN band integer NOT NULL DEFAULT 4,
            ADD COLUMN qualifies boolean NOT NULL DEFAULT false,
            ADD COLUMN rule_version text NOT NULL DEFAULT '',
            ADD COLUMN as_of timestamptz,
            ADD COLUMN below_line_since timestamptz,
            ADD COLUMN profile_version bigint NOT NULL DEFAULT -1,
            ADD COLUMN profile jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN merged_into text
        """
    )
    op.execute("CREATE INDEX leads_email_idx ON score.leads (email) WHERE email IS NOT NULL")
    # The decay sweep re-evaluates MQLs, least recently evaluated first.
    op.execute("CREATE INDEX leads_mql_sweep_idx ON score.leads (as_of) WHERE stage = 'mql'")
    op.execute(
        """
        ALTER TABLE score.ledger
            ADD COLUMN grp text NOT NULL DEFAULT '',
            ADD COLUMN kind text NOT NULL DEFAULT 'behaviour',
            ADD COLUMN requested integer NOT NULL DEFAULT 0,
            ADD COLUMN reason text NOT NULL DEFAULT '',
            ADD COLUMN note text NOT NULL DEFAULT ''
        """
    )
    op.execute(
        """
        CREATE TABLE score.history (
            lead_id text NOT NULL,
            message_id text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            at timestamptz NOT NULL,
            behaviour boolean NOT NULL,
            facts jsonb NOT NULL,
            PRIMARY KEY (lead_id, message_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE score.feedback (
            feedback_id text PRIMARY KEY,
            lead_id text NOT NULL,
            outcome text NOT NULL,
            applied boolean NOT NULL,
            detail text NOT NULL,
            at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE score.feedback")
    op.execute("DROP TABLE score.history")
    op.execute(
        "ALTER TABLE score.ledger DROP COLUMN grp, DROP COLUMN kind, DROP COLUMN requested, "
        "DROP COLUMN reason, DROP COLUMN note"
    )
    op.execute("DROP INDEX score.leads_mql_sweep_idx")
    op.execute("DROP INDEX score.leads_email_idx")
    op.execute(
        """
        ALTER TABLE score.leads
            ADD COLUMN fit_rules_awarded text[] NOT NULL DEFAULT '{}',
            DROP COLUMN email, DROP COLUMN identified, DROP COLUMN total, DROP COLUMN grade,
            DROP COLUMN band, DROP COLUMN qualifies, DROP COLUMN rule_version, DROP COLUMN as_of,
            DROP COLUMN below_line_since, DROP COLUMN profile_version, DROP COLUMN profile,
            DROP COLUMN merged_into
        """
    )
