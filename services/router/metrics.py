"""router's own metrics."""

from functools import cache

from prometheus_client import Counter, Histogram

SPEED_TO_LEAD = Histogram(
    "leadflow_speed_to_lead_seconds",
    "From ingest receiving the triggering event to the routing decision (first decisions only)",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DECISIONS = Counter(
    "leadflow_router_decisions_total", "Routing decisions emitted", ["route", "strategy"]
)
WITHDRAWALS = Counter(
    "leadflow_router_withdrawals_total",
    "Decisions withdrawn (routing.withdrawals): replaced, no longer routed, stage changed,"
    " SLA breached",
    ["route", "cause"],
)
SUPPRESSIONS = Counter(
    "leadflow_router_suppressions_total",
    "Lifecycle changes not routed: the lead must not be contacted (a reason is recorded)",
)
HISTORY = Counter(
    "leadflow_router_history_only_total",
    "Lifecycle changes not routed: triggered before the backfill horizon (a reason is recorded)",
)
SLA_OUTCOMES = Counter(
    "leadflow_router_sla_total",
    "SDR decisions closed by CRM feedback within their SLA (met) or after a breach (breached)",
    ["outcome"],
)
SLA_BREACHES = Counter(
    "leadflow_router_sla_breaches_total", "SDR decisions not accepted by their sla_due_at"
)
ERASED_LEAD_MESSAGES_DROPPED = Counter(
    "leadflow_router_erased_lead_messages_dropped_total",
    "Messages about a lead the router erased that arrived after the erasure (produced before it),"
    " dropped: nothing routed, written or emitted; by kind (stage change, crm feedback, sla check)",
    ["kind"],
)
HOUSEKEEPING_ROWS = Counter(
    "leadflow_router_housekeeping_rows_total",
    "Rows housekeeping handled past their retention, by store: decisions, suppressions and"
    " simulations scrubbed of personal data (rows kept), erased leads' records deleted",
    ["store"],
)


@cache
def decisions_of(route: str, strategy: str) -> Counter:
    """`DECISIONS` for one label set (a `labels()` lookup cost ~3x the increment; the label
    sets are few: routes times strategies)."""
    return DECISIONS.labels(route=route, strategy=strategy)


@cache
def speed_to_lead_of(route: str) -> Histogram:
    """`SPEED_TO_LEAD` for one route."""
    return SPEED_TO_LEAD.labels(route=route)
