"""enrich: leads, identities, seen message ids, and the consumer runner's tables.

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
        CREATE TABLE enrich.leads (
            lead_id text PRIMARY KEY,
            email text,
            first_name text,
            last_name text,
            title text,
            company text,
            company_domain text,
            identified boolean NOT NULL DEFAULT false,
            email_opt_out boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE enrich.identities (
            kind text NOT NULL,
            value text NOT NULL,
            lead_id text NOT NULL REFERENCES enrich.leads (lead_id) DEFERRABLE INITIALLY DEFERRED,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (kind, value)
        )
        """
    )
    op.execute("CREATE INDEX identities_lead_idx ON enrich.identities (lead_id)")
    op.execute(
        """
        CREATE TABLE enrich.seen_messages (
            message_id text PRIMARY KEY,
            seen_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX seen_messages_seen_at_idx ON enrich.seen_messages (seen_at)")
    create_runner_tables("enrich")


def downgrade() -> None:
    op.execute("DROP SCHEMA enrich CASCADE")
