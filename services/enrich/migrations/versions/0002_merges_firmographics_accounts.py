"""enrich: full lead picture, anonymous history, merges, pending re-enrichment, accounts,
suppressions.

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
        ALTER TABLE enrich.leads
            ADD COLUMN profile jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN consent jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN firmographics jsonb,
            ADD COLUMN firmographics_pending boolean NOT NULL DEFAULT false,
            ADD COLUMN firmographics_domain text,
            ADD COLUMN account jsonb,
            ADD COLUMN identified_at timestamptz,
            ADD COLUMN version bigint NOT NULL DEFAULT 0,
            ADD COLUMN merged_into text,
            ADD COLUMN anonymous_events_stored integer NOT NULL DEFAULT 0
        """
    )
    # The re-enrichment of a domain finds its waiting leads through this (small) partial index.
    op.execute(
        "CREATE INDEX leads_pending_domain_idx ON enrich.leads (company_domain)"
        " WHERE firmographics_pending"
    )
    op.execute("CREATE INDEX leads_email_idx ON enrich.leads (email)")
    # Identity facts per lead: anonymous ids attached in the last week are counted by lead.
    op.execute(
        "CREATE INDEX identities_lead_kind_idx ON enrich.identities (lead_id, kind, created_at)"
    )
    op.execute(
        """
        CREATE TABLE enrich.anonymous_events (
            lead_id text NOT NULL,
            seq bigserial NOT NULL,
            message_id text NOT NULL,
            payload jsonb NOT NULL,
            stored_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (lead_id, seq)
        )
        """
    )
    op.execute("CREATE INDEX anonymous_events_stored_at_idx ON enrich.anonymous_events (stored_at)")
    op.execute(
        """
        CREATE TABLE enrich.merges (
            merge_id text PRIMARY KEY,
            surviving_lead_id text NOT NULL,
            merged_lead_id text NOT NULL,
            reason text NOT NULL,
            history_replayed boolean NOT NULL,
            moved_identities jsonb NOT NULL,
            merged_lead_snapshot jsonb NOT NULL,
            triggered_by text NOT NULL,
            merged_at timestamptz NOT NULL DEFAULT now(),
            unmerged_at timestamptz,
            unmerged_by text
        )
        """
    )
    op.execute("CREATE INDEX merges_surviving_idx ON enrich.merges (surviving_lead_id)")
    op.execute("CREATE INDEX merges_merged_idx ON enrich.merges (merged_lead_id)")
    op.execute(
        """
        CREATE TABLE enrich.pending_enrichment (
            domain text PRIMARY KEY,
            requested_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error text
        )
        """
    )
    op.execute(
        "CREATE INDEX pending_enrichment_due_idx ON enrich.pending_enrichment (next_attempt_at)"
    )
    op.execute(
        """
        CREATE TABLE enrich.accounts (
            account_id text PRIMARY KEY,
            name text NOT NULL,
            domain text,
            type text NOT NULL CHECK (type IN ('customer', 'target')),
            owner_id text,
            owner_email text,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE enrich.suppressions (
            value text PRIMARY KEY,
            reason text NOT NULL,
            added_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    for table in ("suppressions", "accounts", "pending_enrichment", "merges", "anonymous_events"):
        op.execute(f"DROP TABLE enrich.{table}")
    op.execute("DROP INDEX enrich.identities_lead_kind_idx")
    op.execute("DROP INDEX enrich.leads_email_idx")
    op.execute("DROP INDEX enrich.leads_pending_domain_idx")
    op.execute(
        """
        ALTER TABLE enrich.leads
            DROP COLUMN profile, DROP COLUMN consent, DROP COLUMN firmographics,
            DROP COLUMN firmographics_pending, DROP COLUMN firmographics_domain, DROP COLUMN account, DROP COLUMN identified_at,
            DROP COLUMN version, DROP COLUMN merged_into, DROP COLUMN anonymous_events_stored
        """
    )
