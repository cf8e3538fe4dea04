"""sync's Prometheus metrics (its health port, `/metrics`), per destination.

Counters and the latency histogram are counted by the replica that sends (the destination's
lease holder); the gauges (queue depth, oldest queued age, retrying) are set by the lease
holder from the queue every lease round, and removed by a replica that loses the lease.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERED = Counter(
    "leadflow_sync_delivered_total",
    "Events a destination acknowledged (2xx), by destination and event type",
    ["destination", "type"],
)
FAILED = Counter(
    "leadflow_sync_failed_attempts_total",
    "Requests that failed, by destination and cause (the status, or timeout / connection)",
    ["destination", "cause"],
)
DEAD_LETTERED = Counter(
    "leadflow_sync_dead_lettered_total",
    "Events moved to the dead letters (rejected content, or max_attempts reached)",
    ["destination"],
)
QUEUED = Gauge("leadflow_sync_queued", "Events waiting for a destination", ["destination"])
OLDEST_QUEUED_SECONDS = Gauge(
    "leadflow_sync_oldest_queued_seconds",
    "Age of the oldest event waiting for a destination (its lag; 0 when none waits)",
    ["destination"],
)
RETRYING = Gauge(
    "leadflow_sync_retrying",
    "Queued events that failed at least once and wait for their next attempt",
    ["destination"],
)
LATENCY = Histogram(
    "leadflow_sync_delivery_latency_seconds",
    "From ingest receiving what caused the event (its received_at; for withdrawals and "
    "erasures, which carry none, sync queueing it) to the destination's 2xx",
    ["destination"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
LAST_ERROR_TIME = Gauge(
    "leadflow_sync_last_error_timestamp_seconds",
    "When a request to the destination last failed (Unix time)",
    ["destination"],
)
PAUSED = Counter(
    "leadflow_sync_paused_total",
    "Times a destination asked every lane to wait (429 or 503 with Retry-After)",
    ["destination"],
)
HELD = Counter(
    "leadflow_sync_reorder_held_total",
    "Routing events held for a lead's earlier sequence that had not arrived yet",
)
GAPS_GIVEN_UP = Counter(
    "leadflow_sync_reorder_gaps_given_up_total",
    "Routing sequences never seen that sync passed over once reorder_wait_s ran out (the events"
    " after them were delivered without them)",
)
ERASED_LEAD_MESSAGES_DROPPED = Counter(
    "leadflow_sync_erased_lead_messages_dropped_total",
    "Messages about a lead sync erased that arrived after the erasure, dropped (by event type)",
    ["type"],
)
