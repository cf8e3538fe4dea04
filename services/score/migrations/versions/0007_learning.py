"""score: leadflow learns.

- The versioned configuration tables (`shared.config_versions`): trained models are versions
  of the kind `model`, one of them live.
- `leads.model_version`, `leads.likelihood`, `leads.activity`: the live model's likelihood of
  each lead, and the lead's activity it was computed from (`learning.activity`), both for the
  model version named (NULL: not computed under any).
- `leads_model_version_idx`: the identified leads on another model version (none: ''), which
  the rescore sweep rescores after a publication (as `leads_rule_version_idx` for rules).
- `trainings`: every training run, what it stored or why it refused (the API's answer to "what
  happened to my training?").

Revision ID: 0007
Revises: 0006
"""

from alembic import op

from shared.config_versions import config_versions_ddl

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in config_versions_ddl("score"):
        op.execute(statement)
    op.execute(
        "ALTER TABLE score.leads ADD COLUMN model_version text, "
        "ADD COLUMN likelihood real, ADD COLUMN activity jsonb"
    )
    op.execute(
        "CREATE INDEX leads_model_version_idx ON score.leads "
        "((coalesce(model_version, '')), lead_id) WHERE merged_into IS NULL AND identified"
    )
    op.execute(
        """
        CREATE TABLE score.trainings (
            run_id text PRIMARY KEY,
            requested_by text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            status text NOT NULL CHECK (status IN ('running', 'stored', 'refused', 'failed')),
            message text NOT NULL DEFAULT '',
            version text
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE score.trainings")
    op.execute("DROP INDEX score.leads_model_version_idx")
    op.execute(
        "ALTER TABLE score.leads DROP COLUMN activity, DROP COLUMN likelihood, "
        "DROP COLUMN model_version"
    )
    for table in ("config_publications", "config_live", "config_kinds", "config_versions"):
        op.execute(f"DROP TABLE score.{table}")
