"""One lead list being uploaded: bytes in, checked and merged leads out.

Synchronous and free of network I/O (it writes only its scratch SQLite file), so the HTTP edge
runs each step in a worker thread and the event loop keeps serving tracking calls meanwhile.

Phase 1, `feed`/`finish`: decode, split into records, map columns, normalise rows, merge
duplicates into the spool; the report counts as it goes, and lists a row's rejection or its
dropped values under that row's own number (before merging: two rows of one email each report
their own). Phase 2, `next_events`: the merged leads in first-seen order as identify events.
Nothing is published before the whole file has been read, so a file that turns out unreadable
half-way publishes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import orjson

from services.ingest.config import MAX_GZIP_RATIO, MAX_INFLATED_BYTES
from services.ingest.lead_import.columns import (
    ColumnPlan,
    ColumnProblem,
    NoEmailColumn,
    plan_columns,
)
from services.ingest.lead_import.events import identify_event
from services.ingest.lead_import.reading import (
    BadUpload,
    CsvRecords,
    NdjsonRecords,
    Record,
    TextDecoder,
)
from services.ingest.lead_import.report import ImportReport
from services.ingest.lead_import.rows import Lead, RowRejected, normalise_row
from services.ingest.lead_import.spool import LeadSpool
from services.ingest.wire import EncodedEvent, encode_fields
from shared.normalize import text

FileFormat = Literal["csv", "ndjson"]
MAX_ROW_BYTES = 32_768  # Segment's limit for one event; a row is one event
MAX_ROW_NESTING = 252  # orjson writes 254 levels; the event adds 2 around a row's values
_SPOOL_BATCH = 1000
_PLAN_CACHE = 64


class LeadListUpload:
    def __init__(
        self,
        *,
        report: ImportReport,
        file_format: FileFormat,
        mapping: Mapping[str, str | None] | None = None,
        delimiter: str | None = None,
        spool: LeadSpool | None = None,
        max_inflated_bytes: int = MAX_INFLATED_BYTES,
        max_gzip_ratio: float = MAX_GZIP_RATIO,
    ) -> None:
        """`spool` defaults to a scratch file in the temporary directory; `close` removes it.
        The limits are `IngestSettings`' `import_*` (see there); past one, `feed` or `finish`
        raises `UploadTooLarge`."""
        self.report = report
        self._format = file_format
        self._mapping = mapping
        self._decoder = TextDecoder(
            max_inflated_bytes=max_inflated_bytes, max_gzip_ratio=max_gzip_ratio
        )
        self._records: CsvRecords | NdjsonRecords = (
            CsvRecords(delimiter=delimiter) if file_format == "csv" else NdjsonRecords()
        )
        self._plan: ColumnPlan | None = None
        self._ndjson_plans: dict[tuple[str, ...], ColumnPlan | str] = {}
        self._pending: list[tuple[int, Lead]] = []
        self._spool = spool or LeadSpool.scratch_file()
        # Steps run in worker threads; a cancelled request may close while a step still runs.
        self._lock = threading.Lock()

    # -- phase 1 ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take the next chunk of the body. Raises `BadUpload` when the file as a whole cannot
        be imported (then nothing may be published)."""
        with self._lock:
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        text = self._decoder.feed(data)
        while True:
            # One inflated slice at a time: parsed (and spooled) before the next is inflated.
            self._take(self._records.feed(text))
            if not self._decoder.backlog:
                break
            text = self._decoder.more()
        self.report.bytes_received = self._decoder.bytes_in

    def finish(self) -> None:
        """The body has ended: read the last records and flush the merge spool."""
        with self._lock:
            self._finish()

    def _finish(self) -> None:
        tail = self._decoder.finish()
        self.report.bytes_received = self._decoder.bytes_in
        self._take([*self._records.feed(tail), *self._records.finish()])
        if self._format == "csv" and self._plan is None:
            raise BadUpload("the file is empty")
        self._flush()
        self.report.leads = self._spool.lead_count

    def _take(self, records: list[Record]) -> None:
        for record in records:
            self._take_one(record)
        if len(self._pending) >= _SPOOL_BATCH:
            self._flush()

    def _take_one(self, record: Record) -> None:
        if self._format == "csv" and self._plan is None:
            self._plan = self._header(record)
            return
        if record.problem is not None or record.cells is None:
            self.report.reject(record.row, record.problem or "unreadable")
            return
        if not record.cells or (isinstance(record.cells, list) and not any(record.cells)):
            self.report.blank_rows += 1
            return
        try:
            lead = self._lead(record.cells)
        except RowRejected as exc:
            self.report.reject(record.row, str(exc))
            return
        self.report.accept(record.row, lead.warnings)
        self._pending.append((record.row, lead))

    def _header(self, record: Record) -> ColumnPlan:
        if record.problem is not None or not isinstance(record.cells, list):
            raise BadUpload(f"the header row cannot be read: {record.problem}")
        headers = [text(cell) or "" for cell in record.cells]
        if not any(headers):
            raise BadUpload("the first row is empty; it must name the columns")
        try:
            plan = plan_columns(headers, mapping=self._mapping)
        except ColumnProblem as exc:
            raise BadUpload(str(exc)) from None
        self.report.list_columns(plan.described(), plan.ignored)
        return plan

    def _lead(self, cells: list[str] | dict[str, Any]) -> Lead:
        if isinstance(cells, dict):
            plan = self._object_plan(cells)
            row: list[Any] = list(cells.values())
        else:
            assert self._plan is not None
            plan, row = self._plan, cells
            if len(row) > len(plan.headers) and any(c.strip() for c in row[len(plan.headers) :]):
                raise RowRejected(
                    f"{len(row)} cells but the header names {len(plan.headers)} columns"
                )
        values = {name: row[i] for i, name in plan.fields.items() if i < len(row)}
        extras = {name: row[i] for i, name in plan.extras.items() if i < len(row)}
        try:
            size = len(orjson.dumps([values, extras]))
        except orjson.JSONEncodeError:
            # Read (orjson reads 1,024 levels) but not writable (254): the event could not be
            # stored, so the row is refused here instead of failing the import.
            raise RowRejected(f"values nested deeper than {MAX_ROW_NESTING} levels") from None
        if size > MAX_ROW_BYTES:
            raise RowRejected(f"the row's values are larger than {MAX_ROW_BYTES // 1024} KB")
        return normalise_row(values, extras)

    def _object_plan(self, obj: dict[str, Any]) -> ColumnPlan:
        keys = tuple(obj)
        plan = self._ndjson_plans.get(keys)
        if plan is None:
            try:
                plan = plan_columns(keys, mapping=_mapping_for(self._mapping, keys))
            except NoEmailColumn:
                plan = "missing email"
            except ColumnProblem as exc:
                plan = str(exc)
            if not isinstance(plan, str) and not self.report.columns:
                self.report.list_columns(plan.described(), ())
            if len(self._ndjson_plans) >= _PLAN_CACHE:
                self._ndjson_plans.clear()
            self._ndjson_plans[keys] = plan
        if isinstance(plan, str):
            raise RowRejected(plan)
        return plan

    def _flush(self) -> None:
        self.report.duplicates_merged += self._spool.add(self._pending)
        self._pending.clear()

    # -- phase 2 ---------------------------------------------------------------------------

    def next_events(self, limit: int, *, source: str, received_at: datetime) -> list[EncodedEvent]:
        """The next `limit` leads as identify events (`events.raw` records) of `source` (the write
        key's), first-seen order; [] at the end."""
        with self._lock:
            leads = self._spool.next_leads(limit)
        return [
            encode_fields(
                identify_event(
                    lead,
                    first_row=row,
                    list_name=self.report.list_name,
                    import_id=self.report.import_id,
                    source=source,
                    received_at=received_at,
                )
            )
            for row, lead in leads
        ]

    def close(self) -> None:
        with self._lock:
            self._spool.close()


def _mapping_for(
    mapping: Mapping[str, str | None] | None, keys: tuple[str, ...]
) -> dict[str, str | None] | None:
    # In NDJSON a mapped key may be absent from some objects; map only the keys present.
    if mapping is None:
        return None
    return {key: target for key, target in mapping.items() if key in keys}
