"""score: scoring rules as versioned configuration, published without a restart.

- `config_imports` (`shared.config_versions.config_imports_ddl`): the rules file contents
  adopted at start, so that a file is published once per content (docs/architecture.md,
  "Changing rules and routing").
- `simulations` (`shared.simulations.simulations_ddl`): the background simulations of
  candidate rules, one at a time per service, with progress and result.
- `stage_changes.rule_version`: the rules version whose thresholds made a stage change (NULL
  for changes recorded before this revision).

The rules themselves are versions of the kind `rules` in `config_versions` (created by 0007).
Leads scored before this revision carry the rules file's own version label; the first start
publishes the file as version 1, and the rescore sweep brings every lead onto it once.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

from shared.config_versions import config_imports_ddl
from shared.simulations import simulations_ddl

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in config_imports_ddl("score"):
        op.execute(statement)
    for statement in simulations_ddl("score"):
        op.execute(statement)
    op.execute("ALTER TABLE score.stage_changes ADD COLUMN rule_version text")


def downgrade() -> None:
    op.execute("ALTER TABLE score.stage_changes DROP COLUMN rule_version")
    op.execute("DROP TABLE score.simulations")
    op.execute("DROP TABLE score.config_imports")
