"""console: the read model (leads, their stage changes, decisions and CRM reports), the funnel's
and speed-to-lead's aggregates, and the consumer runner's tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from shared.consumer.store import create_runner_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Trigram search over a lead's id, email, name and company ("smith" finds Jane Smith).
    # pg_trgm is a trusted extension: the schema's owner may create it.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA console")
    op.execute(
        """
        CREATE TABLE console.leads (
            lead_id text PRIMARY KEY,
            created_at timestamptz NOT NULL,
            stage text NOT NULL,
            stage_at timestamptz NOT NULL,
            moves jsonb NOT NULL,
            email text,
            name text,
            company text,
            title text,
            country text,
            source text,
            import_list text,
            campaign text,
            score jsonb,
            score_at timestamptz,
            likelihood double precision,
            search text GENERATED ALWAYS AS (
                -- || and coalesce, not concat_ws: a generated column needs immutable functions
                lower(lead_id || ' ' || coalesce(email, '') || ' ' || coalesce(name, '') || ' '
                      || coalesce(company, ''))
            ) STORED
        )
        """
    )
    op.execute("CREATE INDEX leads_email_idx ON console.leads (email)")
    op.execute(
        "CREATE INDEX leads_search_idx ON console.leads USING gin (search console.gin_trgm_ops)"
    )
    op.execute(
        """
        CREATE TABLE console.stage_changes (
            transition_id text PRIMARY KEY,
            lead_id text NOT NULL,
            at timestamptz NOT NULL,
            from_stage text NOT NULL,
            to_stage text NOT NULL,
            reason text NOT NULL,
            by_sales boolean NOT NULL,
            skipped text[] NOT NULL,
            score jsonb NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX stage_changes_lead_idx ON console.stage_changes (lead_id, at)")
    op.execute(
        """
        CREATE TABLE console.decisions (
            decision_id text PRIMARY KEY,
            lead_id text NOT NULL,
            route text NOT NULL,
            team text NOT NULL,
            rep text NOT NULL,
            rep_name text,
            target text NOT NULL,
            strategy text,
            reasons text[] NOT NULL,
            supersedes text,
            received_at timestamptz NOT NULL,
            decided_at timestamptz NOT NULL,
            sla_due_at timestamptz,
            speed_ms bigint NOT NULL,
            queued boolean NOT NULL,
            accepted_at timestamptz,
            closed_at timestamptz,
            closed_reason text
        )
        """
    )
    op.execute("CREATE INDEX decisions_lead_idx ON console.decisions (lead_id, decided_at)")
    # "Leads waiting in fallback queues now" reads only these rows.
    op.execute(
        "CREATE INDEX decisions_waiting_idx ON console.decisions (rep, decided_at)"
        " WHERE queued AND closed_at IS NULL AND accepted_at IS NULL"
    )
    op.execute(
        """
        CREATE TABLE console.feedback (
            feedback_id text PRIMARY KEY,
            lead_id text NOT NULL,
            outcome text NOT NULL,
            reason text,
            owner_id text,
            at timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX feedback_lead_idx ON console.feedback (lead_id, at)")
    # The funnel's aggregates (services/console/funnel.py); '' is a dimension the lead lacks.
    dimensions = """
            source text NOT NULL,
            import_list text NOT NULL,
            campaign text NOT NULL,
            country text NOT NULL,
            grade text NOT NULL,
    """
    op.execute(
        f"""
        CREATE TABLE console.funnel (
            cohort_day date NOT NULL,
            {dimensions}
            stage text NOT NULL,
            now bigint NOT NULL,
            reached bigint NOT NULL,
            PRIMARY KEY (cohort_day, source, import_list, campaign, country, grade, stage)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE console.stage_durations (
            cohort_day date NOT NULL,
            {dimensions}
            stage text NOT NULL,
            bucket smallint NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (cohort_day, source, import_list, campaign, country, grade, stage, bucket)
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE console.stage_flows (
            day date NOT NULL,
            {dimensions}
            stage text NOT NULL,
            entered bigint NOT NULL,
            exited bigint NOT NULL,
            PRIMARY KEY (day, source, import_list, campaign, country, grade, stage)
        )
        """
    )
    # The values each funnel filter can take, for its choices (a few hundred rows).
    op.execute(
        """
        CREATE TABLE console.dimension_values (
            dimension text NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (dimension, value)
        )
        """
    )
    # Speed-to-lead (services/console/speed.py).
    op.execute(
        """
        CREATE TABLE console.speed (
            day date NOT NULL,
            team text NOT NULL,
            rep text NOT NULL,
            measure text NOT NULL,
            bucket smallint NOT NULL,
            leads bigint NOT NULL,
            PRIMARY KEY (day, team, rep, measure, bucket)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.sla_outcomes (
            day date NOT NULL,
            team text NOT NULL,
            rep text NOT NULL,
            met bigint NOT NULL,
            breached bigint NOT NULL,
            reassigned bigint NOT NULL,
            escalated bigint NOT NULL,
            PRIMARY KEY (day, team, rep)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE console.reps (
            rep text PRIMARY KEY,
            name text NOT NULL,
            team text NOT NULL
        )
        """
    )
    create_runner_tables("console")


def downgrade() -> None:
    op.execute("DROP SCHEMA console CASCADE")
