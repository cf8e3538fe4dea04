"""score: the scored history is kept for a time (`LEADFLOW_SCORE_HISTORY_RETENTION_DAYS`).

- `history_at_brin`: the history rows by event time (`at`), which housekeeping deletes once
  they are past their retention (`services/score/housekeeping.py`), a bounded batch at a time,
  without reading the whole table.

Why BRIN and not a B-tree: every scored message inserts a history row on the hot path (in the
batch's one write statement), so this index must cost it next to nothing. A BRIN index keeps
one summary (min and max `at`) per range of 128 table pages (1 MB): an insert changes it only
when its value widens its range's summary, and it is tiny (32 kB for 2 million rows, 460 MB of
history, where the primary key takes 110 MB; a B-tree on `at` adds an entry per row, 43 MB
for those rows built at once and more grown by inserts, each written with its insert). Rows
arrive roughly in event-time order, so each range's summary is narrow, and a delete of the
oldest rows reads only the ranges that hold them (on those 2 million rows: 256 of 58,823 pages
for a batch of 5,000 rows past retention). `autosummarize`: a range filled by inserts is
summarized by autovacuum soon after, not only at the table's next vacuum (an unsummarized
range is read by every scan).

A summary only ever widens: once housekeeping has deleted a range's oldest rows and new rows
reuse the space, the range would still claim its deleted minimum, and after one retention
period every range would be read by every round. So housekeeping desummarizes each range it
deletes from, in the same transaction, and summarizes them again (`brin_summarize_new_values`)
at the start of its next round, when the rows it deleted are dead to everyone: the ranges then
describe the rows left. (Both functions need the owner of the index: the service's database
user, which runs the migrations.)

Built concurrently (`shared.migrations.create_index_concurrently`): it reads the table once
(sequentially, no sort) while history inserts go on.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

from shared.migrations import create_index_concurrently

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_concurrently(
        "history_at_brin",
        "ON score.history USING brin (at) WITH (autosummarize = on)",
        schema="score",
    )


def downgrade() -> None:
    op.execute("DROP INDEX score.history_at_brin")
