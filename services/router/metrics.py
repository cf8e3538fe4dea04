"""router's own metrics."""

from prometheus_client import Histogram

SPEED_TO_LEAD = Histogram(
    "leadflow_speed_to_lead_seconds",
    "From ingest receiving the triggering event to the routing decision",
    ["route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
