"""score's own metrics (beside the shared ones of `shared.telemetry`)."""

from __future__ import annotations

from prometheus_client import Counter

FEEDBACK_RESULTS = Counter(
    "leadflow_score_feedback_total",
    "CRM outcomes by what they did to the lead: applied, unchanged (the lead is there or "
    "further), superseded (older than an outcome that holds), refused (cannot happen)",
    ["outcome", "result"],
)
