"""score: lead state, the points ledger, stage history, and the consumer runner's tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.consumer.store import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE score.leads (
            lead_id text PRIMARY KEY,
            stage text NOT NULL,
            fit integer NOT NULL,
            behaviour integer NOT NULL,
            engaged boolean NOT NULL DEFAULT false,
            fit_rules_awarded text[] NOT NULL DEFAULT '{}',
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE score.ledger (
            lead_id text NOT NULL,
            message_id text NOT NULL,
            rule_id text NOT NULL,
            points integer NOT NULL,
            rule_version text NOT NULL,
            event_time timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (lead_id, message_id, rule_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE score.stage_changes (
            transition_id text PRIMARY KEY,
            lead_id text NOT NULL,
            from_stage text NOT NULL,
            to_stage text NOT NULL,
            reason text NOT NULL,
            at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX stage_changes_lead_idx ON score.stage_changes (lead_id, at)")
    create_runner_tables("score")


def downgrade() -> None:
    op.execute("DROP SCHEMA score CASCADE")
