"""router: decisions, suppressions, round-robin turns, and the consumer runner's tables.

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
        CREATE TABLE router.decisions (
            decision_id text PRIMARY KEY,
            transition_id text NOT NULL UNIQUE,
            lead_id text NOT NULL,
            route text NOT NULL,
            owner_id text,
            track text,
            decided_at timestamptz NOT NULL,
            sla_due_at timestamptz,
            payload jsonb NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX decisions_lead_idx ON router.decisions (lead_id, decided_at)")
    op.execute(
        """
        CREATE TABLE router.suppressions (
            transition_id text PRIMARY KEY,
            lead_id text NOT NULL,
            reason text NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE router.team_turns (
            team text PRIMARY KEY,
            next_turn bigint NOT NULL
        )
        """
    )
    create_runner_tables("router")


def downgrade() -> None:
    op.execute("DROP SCHEMA router CASCADE")
