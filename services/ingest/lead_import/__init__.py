"""Lead-list upload: `POST /v1/leads/import` (CSV or NDJSON, streamed, checked, merged) and the
`leadflow-import` command that uploads a file with a progress bar.

Each valid row becomes an identify event on `events.raw` with the list's name as `source`.
"""

from services.ingest.lead_import.api import create_import_router

__all__ = ["create_import_router"]
