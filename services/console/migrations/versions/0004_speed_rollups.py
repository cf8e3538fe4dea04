"""console: rollups of speed-to-lead, so that a year of it reads few rows at 1M leads (bench
"console", 2026-12-03: a year's page read 161k rows twice, 657 ms at p95): per day without
team and rep (the chart), and per month with them (a rep's figures over whole months).

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console.speed_days (
            day date NOT NULL,
            measure text NOT NULL,
            bucket smallint NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (day, measure, bucket)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.speed_months (
            month date NOT NULL,
            team text NOT NULL,
            rep text NOT NULL,
            measure text NOT NULL,
            bucket smallint NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (month, team, rep, measure, bucket)
        )
        """
    )
    op.execute(
        "INSERT INTO console.speed_days SELECT day, measure, bucket, sum(leads)"
        " FROM console.speed GROUP BY day, measure, bucket"
    )
    op.execute(
        "INSERT INTO console.speed_months SELECT date_trunc('month', day)::date, team, rep,"
        " measure, bucket, sum(leads) FROM console.speed GROUP BY 1, team, rep, measure, bucket"
    )


def downgrade() -> None:
    op.execute("DROP TABLE console.speed_days, console.speed_months")
