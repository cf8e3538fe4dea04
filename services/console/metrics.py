"""The console's Prometheus metrics (served on its health port, `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter

APPLIED = Counter(
    "leadflow_console_messages_total",
    "Messages the read model took, by kind; `repeated`: produced twice upstream, applied once; "
    "`unknown lead`: a CRM report for a lead the console has not seen (not kept)",
    ["kind"],
)
ERASED_LEAD_MESSAGES_DROPPED = Counter(
    "leadflow_console_erased_lead_messages_dropped_total",
    "Messages about a lead the console erased that arrived after the erasure (produced before"
    " it), dropped: nothing written; by kind (stage change, decision, crm report). A score change"
    " of a lead without a record writes nothing whatever its lead, and is not counted here",
    ["kind"],
)
HOUSEKEEPING_ROWS = Counter(
    "leadflow_console_housekeeping_rows_total",
    "Rows housekeeping deleted past their retention, by store (erased_leads: the records of"
    " erased leads)",
    ["store"],
)
