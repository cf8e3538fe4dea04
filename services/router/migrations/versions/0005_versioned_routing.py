"""router: the routing configuration as versioned configuration, published without a restart.

- `config_versions`, `config_kinds`, `config_live`, `config_publications`
  (`shared.config_versions.config_versions_ddl`): the routing versions (kind `routing`), one
  live, and the publication history.
- `config_imports` (`config_imports_ddl`): the routing file contents adopted at start, so that a
  file is published once per content (`services/router/routing_versions.py`).
- `simulations` (`shared.simulations.simulations_ddl`): the background simulations of draft
  routings, one at a time, with progress and result.
- `decisions.routing_version`: the routing version that made the decision (NULL for decisions
  made before this revision, under the routing file alone).
- `decisions.change`: the `leads.lifecycle` change a first decision answered, as JSON, so that a
  simulation can replay it through a draft (NULL for reassignments, which answer an SLA check,
  and for decisions made before this revision: a simulation skips those and says how many).
- `decisions_sdr_first_idx`: the first sdr decisions by time, what a simulation reads (the
  newest of the last 30 days, by keyset); partial, so nurture decisions and reassignments do
  not pay for it.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from shared.config_versions import config_imports_ddl, config_versions_ddl
from shared.simulations import simulations_ddl

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in config_versions_ddl("router"):
        op.execute(statement)
    for statement in config_imports_ddl("router"):
        op.execute(statement)
    for statement in simulations_ddl("router"):
        op.execute(statement)
    op.execute(
        "ALTER TABLE router.decisions ADD COLUMN routing_version text, ADD COLUMN change jsonb"
    )
    op.execute(
        "CREATE INDEX decisions_sdr_first_idx ON router.decisions (decided_at, decision_id)"
        " WHERE route = 'sdr' AND supersedes IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX router.decisions_sdr_first_idx")
    op.execute("ALTER TABLE router.decisions DROP COLUMN change, DROP COLUMN routing_version")
    op.execute("DROP TABLE router.simulations")
    for table in (
        "config_imports",
        "config_publications",
        "config_live",
        "config_kinds",
        "config_versions",
    ):
        op.execute(f"DROP TABLE router.{table}")
