"""score's own metrics (beside the shared ones of `shared.telemetry`)."""

from __future__ import annotations

from prometheus_client import Counter

FEEDBACK_RESULTS = Counter(
    "leadflow_score_feedback_total",
    "CRM outcomes by what they did to the lead: applied, unchanged (the lead is there or "
    "further), superseded (older than an outcome that holds), refused (cannot happen)",
    ["outcome", "result"],
)

ERASED_LEAD_MESSAGES_DROPPED = Counter(
    "leadflow_score_erased_lead_messages_dropped_total",
    "Messages about an erased lead that arrived after its erasure (they were on their way) and "
    "were dropped instead of creating the lead again, by topic",
    ["topic"],
)
