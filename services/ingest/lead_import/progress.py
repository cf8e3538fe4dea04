"""Imports this ingest replica is running or ran recently, by import id.

Progress lives in the memory of the replica that receives the upload: behind a load balancer,
`GET /v1/leads/import/{id}` must reach the same replica (or the client reads the final report
from the upload's own response, which every replica returns). A restart forgets them.

Bounded: a running report is at most `report.MAX_REPORT_BYTES` and at most
`IngestSettings.import_slots` run at once; finished reports are kept for `ttl_s`, at
most `keep` of them and at most `max_bytes` of their JSON together, the oldest dropped first.
Time is an argument (`now`, monotonic seconds): nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import orjson

from services.ingest.lead_import.report import ImportReport, ImportState

KEEP_FINISHED = 1000
_RUNNING = (ImportState.RECEIVING, ImportState.PUBLISHING)


class ImportInProgress(Exception):
    """An import with this id is still running (a client reused an id)."""


class ReportExpired(Exception):
    """The import finished more than the registry's TTL ago: its report is no longer kept."""


@dataclass
class _Finished:
    report: ImportReport
    finished_at: float
    size: int


class ImportRegistry:
    def __init__(self, *, ttl_s: float, max_bytes: int, keep: int = KEEP_FINISHED) -> None:
        self._running: dict[str, ImportReport] = {}
        self._finished: OrderedDict[str, _Finished] = OrderedDict()  # oldest first
        # Expired ids -> the name of their write key, to say why 404 (to that key only).
        self._expired: OrderedDict[str, str] = OrderedDict()
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._keep = keep
        self.size_bytes = 0
        """Bytes of the finished reports' JSON kept (what `max_bytes` bounds)."""

    def begin(self, report: ImportReport) -> None:
        """Track a new import; a finished one with the same id is replaced (a re-upload)."""
        if report.import_id in self._running:
            raise ImportInProgress(report.import_id)
        self._drop(report.import_id)
        self._expired.pop(report.import_id, None)
        self._running[report.import_id] = report

    def finish(self, report: ImportReport, *, now: float) -> None:
        """The import ended (done or failed): keep its report for `ttl_s`, within the bounds."""
        if self._running.get(report.import_id) is not report:
            return
        del self._running[report.import_id]
        size = len(orjson.dumps(report.as_json()))
        self._finished[report.import_id] = _Finished(report, now, size)
        self.size_bytes += size
        self._expire(now)
        while self._finished and (
            self.size_bytes > self._max_bytes or len(self._finished) > self._keep
        ):
            self._drop(next(iter(self._finished)))

    def get(self, import_id: str, *, owner: str | None, now: float) -> ImportReport | None:
        """The report of the running or finished import `import_id` that the write key `owner`
        started (None: whichever key did); None for an id unknown (to that key). Raises
        `ReportExpired` for a report dropped because its TTL passed."""
        self._expire(now)
        report = self._running.get(import_id)
        if report is None and (finished := self._finished.get(import_id)) is not None:
            report = finished.report
        if report is not None:
            return report if owner in (None, report.owner) else None
        if (expired := self._expired.get(import_id)) is not None and owner in (None, expired):
            raise ReportExpired(import_id)
        return None

    @property
    def running(self) -> int:
        return len(self._running)

    def running_for(self, owner: str) -> int:
        """Imports running that the write key `owner` started."""
        return sum(1 for report in self._running.values() if report.owner == owner)

    def _expire(self, now: float) -> None:
        while self._finished:
            import_id, oldest = next(iter(self._finished.items()))
            if now - oldest.finished_at < self._ttl_s:
                break
            self._drop(import_id)
            self._expired[import_id] = oldest.report.owner
            if len(self._expired) > self._keep:
                self._expired.popitem(last=False)

    def _drop(self, import_id: str) -> None:
        finished = self._finished.pop(import_id, None)
        if finished is not None:
            self.size_bytes -= finished.size
