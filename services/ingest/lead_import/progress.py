"""Imports this ingest replica is running or ran recently, by import id.

Progress lives in the memory of the replica that receives the upload: behind a load balancer,
`GET /v1/leads/import/{id}` must reach the same replica (or the client reads the final report
from the upload's own response, which every replica returns). A restart forgets them.
"""

from __future__ import annotations

from collections import OrderedDict

from services.ingest.lead_import.report import ImportReport, ImportState

KEEP_FINISHED = 1000


class ImportInProgress(Exception):
    """An import with this id is still running (a client reused an id)."""


class ImportRegistry:
    def __init__(self, *, keep: int = KEEP_FINISHED) -> None:
        self._reports: OrderedDict[str, ImportReport] = OrderedDict()
        self._keep = keep

    def begin(self, report: ImportReport) -> None:
        """Track a new import; a finished one with the same id is replaced (a re-upload)."""
        known = self._reports.get(report.import_id)
        if known is not None and known.state in (ImportState.RECEIVING, ImportState.PUBLISHING):
            raise ImportInProgress(report.import_id)
        self._reports.pop(report.import_id, None)
        self._reports[report.import_id] = report
        finished = [
            key
            for key, value in self._reports.items()
            if value.state in (ImportState.DONE, ImportState.FAILED)
        ]
        for key in finished[: max(0, len(finished) - self._keep)]:
            del self._reports[key]

    def get(self, import_id: str) -> ImportReport | None:
        return self._reports.get(import_id)

    @property
    def running(self) -> int:
        return sum(
            r.state in (ImportState.RECEIVING, ImportState.PUBLISHING)
            for r in self._reports.values()
        )
