"""score: a lead's row is updated in place (HOT) when an event changes only its score.

Every scored event rewrites the lead's row (score, `as_of`, picture). While `as_of` was the key
of `leads_mql_sweep_idx`, every such update was a new row version with an entry in each of the
table's indexes (primary key, email, rules version, sweep), and the table was packed full, so
no update could stay on its page. Now:

- the decay sweep's index holds the MQLs by lead id (`leads_mql_idx`): no column an event
  changes is indexed, so the update is heap-only; the sweep (every few minutes) reads the MQLs
  and sorts them by `as_of` itself;
- `fillfactor` 70 leaves room on each page for the next version of its rows (applies to pages
  written from now on).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX score.leads_mql_sweep_idx")
    op.execute(
        "CREATE INDEX leads_mql_idx ON score.leads (lead_id) "
        "WHERE stage = 'mql' AND merged_into IS NULL"
    )
    op.execute("ALTER TABLE score.leads SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE score.leads RESET (fillfactor)")
    op.execute("DROP INDEX score.leads_mql_idx")
    op.execute("CREATE INDEX leads_mql_sweep_idx ON score.leads (as_of) WHERE stage = 'mql'")
