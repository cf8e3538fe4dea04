"""console: the people who sign in, their sessions, and the audit log.

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
        CREATE TABLE console.people (
            username text PRIMARY KEY,
            display_name text NOT NULL,
            role text NOT NULL CHECK (role IN ('viewer', 'editor', 'admin')),
            password_hash text,
            oidc_subject text UNIQUE,
            disabled boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            last_signed_in_at timestamptz
        )
        """
    )
    # Only a hash of each session's id is stored: a copy of the table opens no session.
    op.execute(
        """
        CREATE TABLE console.sessions (
            session_sha256 text PRIMARY KEY,
            username text NOT NULL REFERENCES console.people ON DELETE CASCADE,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX sessions_expiry_idx ON console.sessions (expires_at)")
    # Who did what, and which lead they looked at (by id: the log itself holds no personal
    # data of leads).
    op.execute(
        """
        CREATE TABLE console.audit (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            username text NOT NULL,
            action text NOT NULL,
            lead_id text,
            detail text NOT NULL DEFAULT ''
        )
        """
    )
    op.execute(
        "CREATE INDEX audit_lead_idx ON console.audit (lead_id, at) WHERE lead_id IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE console.audit, console.sessions, console.people")
