"""score: each lead's first touch (`leads.first_touch`), kept whether or not a model is live.

- `leads.first_touch`: where the lead came from, as `engine.first_touch` keeps it: of each
  origin fact (`source`, `context.campaign.name`, `context.campaign.source`,
  `context.campaign.medium`, `context.import.list`), the first non-empty text value among the
  lead's scored messages, normalised (whitespace collapsed, casefolded, at most 80 characters),
  as a JSON object keyed by fact; NULL while none is known. score sends it with every stage
  change (`LifecycleChanged.first_touch`).
- Backfilled from each lead's stored history, first value by `seq` (the order its messages
  were scored). In SQL, `lower` stands for Python's `casefold` and `\\s` for its whitespace:
  they differ only for a few characters (`ß` is kept, not `ss`), and only in values scored
  before this revision.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE score.leads ADD COLUMN first_touch jsonb")
    # One pass over the history: the (lead, fact, value) of every origin fact with text in it,
    # the first by seq of each (lead, fact), one object per lead. Merged leads' rows hold what
    # they still hold (an absorbed anonymous lead its own messages).
    op.execute(
        r"""
        WITH touches AS (
            SELECT DISTINCT ON (item.lead_id, touch.fact) item.lead_id, touch.fact, touch.value
            FROM score.history AS item
            CROSS JOIN LATERAL (
                SELECT fact, left(lower(btrim(regexp_replace(item.facts ->> fact, '\s+', ' ',
                                                             'g'))), 80) AS value
                FROM unnest(ARRAY['source', 'context.campaign.name', 'context.campaign.source',
                                  'context.campaign.medium', 'context.import.list']) AS fact
                WHERE jsonb_typeof(item.facts -> fact) = 'string'
            ) AS touch
            WHERE touch.value <> ''
            ORDER BY item.lead_id, touch.fact, item.seq
        )
        UPDATE score.leads AS lead SET first_touch = firsts.touch
        FROM (SELECT lead_id, jsonb_object_agg(fact, value) AS touch FROM touches
              GROUP BY lead_id) AS firsts
        WHERE lead.lead_id = firsts.lead_id
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE score.leads DROP COLUMN first_touch")
