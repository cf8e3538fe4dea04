"""sync: the delivery queue, its dead letters, the destinations' leases and counters, the leads'
routing order, the erased leads and the consumer runner's tables.

- `deliveries`: one row per event and destination, waiting (see services/sync/__init__.py). A
  lane reads its head with `deliveries_lane_idx` (destination, lane, delivery_id): an index
  range scan of `batch_size` rows whatever the queue holds (100k rows queued cost the same
  claim as 10). Every row is claimable (held routing events wait in `lead_order`, not here),
  so the index needs no predicate; the rows that failed at least once, which the health
  figures count, have a partial index of their own (`deliveries_retrying_idx`), and an erasure
  finds a lead's rows by `deliveries_lead_idx`.
- `dead_letters`: what a destination refused or what ran out of attempts, per destination, for
  `replay` (by destination, or by event id) and the health figures.
- `destinations`: per destination, its lease (`leased_by` until `lease_until`: one replica
  delivers to it), the lanes its queued rows were split into (`lanes`: when the file changes a
  destination's `concurrency`, the new lease holder moves the rows to their new lanes before
  sending), and its counters (delivered total, last delivery, last error).
- `lead_order`: per lead, the last routing sequence released and the events held for an
  earlier one (services/sync/ordering.py); `lead_order_held_idx` finds the holds that ran out.
- `erased_leads` (`shared.privacy.erased_leads_ddl`).

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.consumer.store import create_runner_tables
from shared.privacy import erased_leads_ddl

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sync.deliveries (
            delivery_id bigserial PRIMARY KEY,
            destination text NOT NULL,
            lane integer NOT NULL,
            lead_id text NOT NULL,
            event_id text NOT NULL,
            event_kind text NOT NULL,
            sequence integer,
            event_at timestamptz NOT NULL,
            data jsonb NOT NULL,
            received_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz,
            last_error text
        )
        """
    )
    op.execute(
        "CREATE INDEX deliveries_lane_idx ON sync.deliveries (destination, lane, delivery_id)"
    )
    op.execute(
        "CREATE INDEX deliveries_retrying_idx ON sync.deliveries (destination) WHERE attempts > 0"
    )
    op.execute("CREATE INDEX deliveries_lead_idx ON sync.deliveries (lead_id)")
    op.execute(
        """
        CREATE TABLE sync.dead_letters (
            dead_letter_id bigserial PRIMARY KEY,
            destination text NOT NULL,
            lead_id text NOT NULL,
            event_id text NOT NULL,
            event_kind text NOT NULL,
            sequence integer,
            event_at timestamptz NOT NULL,
            data jsonb NOT NULL,
            received_at timestamptz NOT NULL,
            created_at timestamptz NOT NULL,
            attempts integer NOT NULL,
            last_status integer,
            last_error text NOT NULL,
            dead_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX dead_letters_destination_idx ON sync.dead_letters (destination, event_id)"
    )
    op.execute("CREATE INDEX dead_letters_lead_idx ON sync.dead_letters (lead_id)")
    op.execute("CREATE INDEX dead_letters_dead_at_idx ON sync.dead_letters (dead_at)")
    op.execute(
        """
        CREATE TABLE sync.destinations (
            name text PRIMARY KEY,
            leased_by text,
            lease_until timestamptz,
            lanes integer,
            delivered_total bigint NOT NULL DEFAULT 0,
            last_delivered_at timestamptz,
            last_error text,
            last_error_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE sync.lead_order (
            lead_id text PRIMARY KEY,
            last_sequence integer NOT NULL,
            held jsonb NOT NULL DEFAULT '[]',
            held_until timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX lead_order_held_idx ON sync.lead_order (held_until) "
        "WHERE held_until IS NOT NULL"
    )
    op.execute("CREATE INDEX lead_order_updated_idx ON sync.lead_order (updated_at)")
    for statement in erased_leads_ddl("sync"):
        op.execute(statement)
    create_runner_tables("sync")


def downgrade() -> None:
    op.execute("DROP SCHEMA sync CASCADE")
