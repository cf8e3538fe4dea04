"""enrich: fewer index entries and trigger calls per event on the hot path.

Each event inserts a `seen_messages` row, most (anonymous page views) an `anonymous_events` row,
and some an identity; every row costs an entry in each of its table's indexes. Now:

- `identities_lead_idx` (lead_id) is dropped: `identities_lead_kind_idx` (lead_id, kind,
  created_at) starts with the same column and serves every lookup by lead (facts, moves on
  merge and unmerge);
- `leads_email_idx` holds only leads with an email: most leads are anonymous visitors (email
  NULL), created with their first page view, and nothing looks leads up by a missing email;
- the identities' foreign key to leads is dropped: it queued a trigger per new identity and ran
  a `SELECT ... FOR KEY SHARE` of its lead at commit (and locked a lead created in the same
  transaction). The invariant stays, kept by the only writer: `store_batch` writes a batch's
  links in the same statement as the leads they name (a new lead is always among them), merges
  and unmerges move identities only to leads that exist, and no lead is ever deleted; the
  integration tests check that no identity names a missing lead;
- the retention indexes (`seen_messages.seen_at`, `anonymous_events.stored_at`) are BRIN
  instead of B-tree: both columns grow with insertion order, so a block range summary answers
  housekeeping's "older than" scans (a few times an hour), and an insert adds no index entry.

The tables are live (every event writes them): indexes are rebuilt concurrently
(`shared.migrations.replace_index_concurrently`: built beside the old one, which is then dropped
and the new one renamed), so the hot path's inserts never wait for a build; dropping the
foreign key takes a brief exclusive lock, bounded by the migrations' lock timeout.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

from shared.migrations import drop_index_concurrently, replace_index_concurrently

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE enrich.identities DROP CONSTRAINT IF EXISTS identities_lead_id_fkey")
    drop_index_concurrently("identities_lead_idx", schema="enrich")
    replace_index_concurrently(
        "leads_email_idx", "ON enrich.leads (email) WHERE email IS NOT NULL", schema="enrich"
    )
    replace_index_concurrently(
        "seen_messages_seen_at_idx",
        "ON enrich.seen_messages USING brin (seen_at) WITH (autosummarize = on)",
        schema="enrich",
    )
    replace_index_concurrently(
        "anonymous_events_stored_at_idx",
        "ON enrich.anonymous_events USING brin (stored_at) WITH (autosummarize = on)",
        schema="enrich",
    )


def downgrade() -> None:
    op.execute("DROP INDEX enrich.anonymous_events_stored_at_idx")
    op.execute("CREATE INDEX anonymous_events_stored_at_idx ON enrich.anonymous_events (stored_at)")
    op.execute("DROP INDEX enrich.seen_messages_seen_at_idx")
    op.execute("CREATE INDEX seen_messages_seen_at_idx ON enrich.seen_messages (seen_at)")
    op.execute("DROP INDEX enrich.leads_email_idx")
    op.execute("CREATE INDEX leads_email_idx ON enrich.leads (email)")
    op.execute("CREATE INDEX identities_lead_idx ON enrich.identities (lead_id)")
    op.execute(
        "ALTER TABLE enrich.identities ADD CONSTRAINT identities_lead_id_fkey FOREIGN KEY (lead_id)"
        " REFERENCES enrich.leads (lead_id) DEFERRABLE INITIALLY DEFERRED"
    )
