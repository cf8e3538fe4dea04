"""enrich: erasure requests, their status per service, and the do-not-track list.

- `erasure_requests`: one row per request (the audit). The identifier is kept in clear only
  until the request is resolved (`identifier`, then NULL); afterwards only its keyed hash
  (`identifier_hash`, `shared.privacy.identifier_hash`), its kind, who asked, why, when, and
  what was found. `unsuppressed_*`: when and by whom its do-not-track entries were lifted.
- `erasure_services`: each service's part of a request: pending until its report arrives.
- `merges_merged_at_idx`: housekeeping forgets merges older than their retention by it (a merge
  keeps both leads' pictures, personal data, for as long as it can be reversed).
- `do_not_track`: keyed hashes of every identifier an erased person had, with the request that
  put them there; an event naming one is dropped (`services/enrich/erasures.py`).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from shared.migrations import create_index_concurrently

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE enrich.erasure_requests (
            request_id text PRIMARY KEY,
            identifier_kind text NOT NULL
                CHECK (identifier_kind IN ('email', 'user_id', 'anonymous_id')),
            identifier_hash bytea NOT NULL,
            identifier text,
            reason text NOT NULL,
            requested_by text NOT NULL,
            requested_at timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz,
            leads_found integer,
            identifiers_found integer,
            unsuppressed_at timestamptz,
            unsuppressed_by text,
            CHECK ((resolved_at IS NULL) = (identifier IS NOT NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX erasure_requests_unresolved_idx ON enrich.erasure_requests (requested_at)"
        " WHERE resolved_at IS NULL"
    )
    op.execute(
        "CREATE INDEX erasure_requests_requested_at_idx ON enrich.erasure_requests"
        " (requested_at DESC)"
    )
    op.execute(
        """
        CREATE TABLE enrich.erasure_services (
            request_id text NOT NULL REFERENCES enrich.erasure_requests (request_id),
            service text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'complete')),
            erased jsonb NOT NULL DEFAULT '{}',
            anonymised jsonb NOT NULL DEFAULT '{}',
            reported_at timestamptz,
            PRIMARY KEY (request_id, service)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE enrich.do_not_track (
            identifier_hash bytea NOT NULL,
            request_id text NOT NULL REFERENCES enrich.erasure_requests (request_id),
            identifier_kind text NOT NULL,
            added_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (identifier_hash, request_id)
        )
        """
    )
    op.execute("CREATE INDEX do_not_track_request_idx ON enrich.do_not_track (request_id)")
    # enrich.merges is live: built without blocking merges.
    create_index_concurrently(
        "merges_merged_at_idx", "ON enrich.merges (merged_at)", schema="enrich"
    )


def downgrade() -> None:
    op.execute("DROP INDEX enrich.merges_merged_at_idx")
    op.execute("DROP TABLE enrich.do_not_track, enrich.erasure_services, enrich.erasure_requests")
