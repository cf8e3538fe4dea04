"""The console's Prometheus metrics (served on its health port, `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter

APPLIED = Counter(
    "leadflow_console_messages_total",
    "Messages the read model took, by kind; `repeated`: produced twice upstream, applied once; "
    "`unknown lead`: a CRM report for a lead the console has not seen (not kept)",
    ["kind"],
)
