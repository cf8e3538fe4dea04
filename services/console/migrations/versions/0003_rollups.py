"""console: rollups of the funnel's counters, so that the pages read few rows at 1M leads
(bench "console", 2026-12-03: keyed by day and every dimension, a 90-day funnel summed ~950k
rows). Without dimensions per day (the unfiltered funnel, the one most looked at), and per
dimensions without day (the leads in each stage now, over every cohort). Filled from the
dimensioned counters; the handler keeps all of them from then on.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console.funnel_days (
            cohort_day date NOT NULL,
            stage text NOT NULL,
            now bigint NOT NULL,
            reached bigint NOT NULL,
            PRIMARY KEY (cohort_day, stage)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.stage_duration_days (
            cohort_day date NOT NULL,
            stage text NOT NULL,
            bucket smallint NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (cohort_day, stage, bucket)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.stage_flow_days (
            day date NOT NULL,
            stage text NOT NULL,
            entered bigint NOT NULL,
            exited bigint NOT NULL,
            PRIMARY KEY (day, stage)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.stage_now (
            source text NOT NULL,
            import_list text NOT NULL,
            campaign text NOT NULL,
            country text NOT NULL,
            grade text NOT NULL,
            stage text NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (source, import_list, campaign, country, grade, stage)
        )
        """
    )
    op.execute(
        "INSERT INTO console.funnel_days SELECT cohort_day, stage, sum(now), sum(reached)"
        " FROM console.funnel GROUP BY cohort_day, stage"
    )
    op.execute(
        "INSERT INTO console.stage_duration_days SELECT cohort_day, stage, bucket, sum(leads)"
        " FROM console.stage_durations GROUP BY cohort_day, stage, bucket"
    )
    op.execute(
        "INSERT INTO console.stage_flow_days SELECT day, stage, sum(entered), sum(exited)"
        " FROM console.stage_flows GROUP BY day, stage"
    )
    op.execute(
        "INSERT INTO console.stage_now SELECT source, import_list, campaign, country, grade,"
        " stage, sum(now) FROM console.funnel"
        " GROUP BY source, import_list, campaign, country, grade, stage"
    )


def downgrade() -> None:
    op.execute(
        "DROP TABLE console.funnel_days, console.stage_duration_days, console.stage_flow_days,"
        " console.stage_now"
    )
