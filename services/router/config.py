"""router settings (LEADFLOW_ROUTER_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.router.routing_config import DEFAULT_ROUTING_FILE
from services.router.simulation_runs import WINDOW as SIMULATION_WINDOW
from shared.privacy import TOPICS_KEEP_AT_MOST_DAYS
from shared.settings import SERVICE_SOURCES, ConsumingServiceSettings


class RouterSettings(ConsumingServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_ROUTER_", **SERVICE_SOURCES)

    health_port: int = 8083
    api_port: int = 8093
    routing_file: Path = DEFAULT_ROUTING_FILE
    # The SLA timer: how often at most it looks for decisions past their sla_due_at (it looks
    # less often while nothing can be due: see sla_timers; a due SLA is claimed at most one
    # interval late), how many it claims per round, and when a claimed check that changed
    # nothing (a lead waiting in the queue for a rep to start their day) is looked at again.
    # Short rounds of few checks: a round's checks share the consumer's batches with fresh MQLs,
    # so a long round is a pause in speed-to-lead (bench/RESULTS.md, "The SLA timer's rounds").
    sla_check_interval_s: float = Field(default=1.0, gt=0)
    sla_check_batch: int = Field(default=200, ge=1)
    sla_recheck_s: float = Field(default=300.0, gt=0)
    # The backfill horizon: a stage change whose triggering event (its `at`) is older than this
    # is history: recorded with the reason, never routed (no rep, SLA timer or nurture track for
    # a moment long past; see domain.route_now). 72 h: an event that arrives hours late (a
    # client's retries, a broker or consumer outage) or a router stopped over a weekend (Friday
    # evening to Monday morning is about 64 h) still brings a lead to act on, and a three-day-old
    # demo request is still worth a call (the average answer takes 42 h, README); months of
    # history loaded from another tool stay history.
    backfill_horizon_h: float = Field(default=72.0, gt=0)
    # Housekeeping (`housekeeping.py`): every `housekeeping_interval_s`, one replica at a time.
    # A decision's personal parts (the lead's email, name and company, the reasons, the stage
    # change it answered with the lead's profile; a suppression's email and reason text) are
    # kept `decision_payload_retention_days` after it was decided (recorded), then scrubbed;
    # the rows stay, so counts and each rep's history stay true. They are needed while the
    # decision is live: its SLA timer (minutes to hours), a reassignment, the CRM's feedback
    # closing it (a CRM that names the lead by email alone), the routing history operators
    # read when a rep asks "why did I get this lead?" (days to weeks later), and simulations,
    # which replay the stage changes of the last 30 days (`simulation_runs.WINDOW`). 90 days:
    # three times the simulation window and any SLA by far, a quarter's pipeline review
    # included; at least the simulation window and a day, so no simulation ever finds a
    # change of its window scrubbed (and longer than any topic keeps a message).
    decision_payload_retention_days: float = Field(default=90, ge=SIMULATION_WINDOW.days + 1)
    # An erased lead is remembered (`router.erased_leads`, hashes of lead ids) this long: longer
    # than the longest topic retention (30 days, 31 with a segment left open) and a margin, so
    # a replay of a topic from its earliest offset still finds the lead erased and drops its
    # messages instead of routing it again.
    erased_leads_retention_days: float = Field(default=45, ge=TOPICS_KEEP_AT_MOST_DAYS)
    housekeeping_interval_s: float = Field(default=3600, gt=0)
