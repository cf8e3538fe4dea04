"""The import report: what happened to every row, bounded in size whatever the file's size.

It doubles as the progress of an import in flight (`GET /v1/leads/import/{id}`): the counters
grow while the file streams in and while leads are published.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_LISTED_REJECTIONS = 1000
MAX_LISTED_WARNINGS = 1000
MAX_LISTED_BYTES = 128 * 1024
"""Characters of listed rejections, and again of listed warnings: a line quotes values, so a
count alone does not bound a report. Past either limit lines are counted, not listed."""
MAX_LINE_CHARS = 500
"""A listed rejection or warning longer than this is cut (its reason comes first)."""
MAX_HEADER_CHARS = 200
"""A column header (up to a whole 1 MiB row) is cut to this in the report."""
MAX_COLUMNS_CHARS = 64 * 1024
"""Characters of `columns` and again of `ignoredColumns`; the rest are summed up in one entry."""
MAX_ERROR_CHARS = 2000
MAX_REPORT_BYTES = 2 * MAX_LISTED_BYTES + 2 * MAX_COLUMNS_CHARS + MAX_ERROR_CHARS + 16 * 1024
"""About the most a report's JSON takes (ASCII text; UTF-8 and JSON escapes can add to it):
what one running import holds; the registry accounts finished ones by their actual JSON."""


class ImportState(StrEnum):
    RECEIVING = "receiving"  # the file is streaming in; rows are checked and merged
    PUBLISHING = "publishing"  # the whole file is read; leads are going to events.raw
    DONE = "done"  # every lead is acknowledged by the broker
    FAILED = "failed"  # stopped; `error` says why (nothing or part published: upload again)


@dataclass
class ImportReport:
    """Counters, the first MAX_LISTED_REJECTIONS rejections ("row 17: invalid email ...") and
    the first MAX_LISTED_WARNINGS warnings ("row 18: phone '555' dropped: not a valid number":
    the row was accepted without that value), each list also cut at MAX_LISTED_BYTES (what is
    not listed is counted: `rejectionsNotListed`, `warningsNotListed`).

    Invariants once the file is read: rows_read = accepted + rejected (blank rows are counted
    apart), leads = accepted - duplicates_merged is the number of identify events, and `warned`
    (accepted rows with at least one value dropped) <= accepted.
    """

    import_id: str
    list_name: str
    owner: str = field(default="", repr=False)
    """The name of the write key that started it: only that key (or one with the `admin`
    scope) may read its progress."""
    state: ImportState = ImportState.RECEIVING
    bytes_received: int = 0
    rows_read: int = 0
    blank_rows: int = 0
    accepted: int = 0
    rejected: int = 0
    warned: int = 0
    duplicates_merged: int = 0
    leads: int = 0
    published: int = 0
    rejections: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    warnings_not_listed: int = 0
    columns: dict[str, str] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    error: str | None = None

    _rejections_chars: int = field(default=0, init=False, repr=False)
    _warnings_chars: int = field(default=0, init=False, repr=False)

    def fail(self, reason: str) -> None:
        """Stopped: nothing or part published. The reason may quote the file (a header), so
        it is cut like a listed line."""
        self.state = ImportState.FAILED
        self.error = _cut(reason, MAX_ERROR_CHARS)

    def reject(self, row: int, reason: str) -> None:
        self.rows_read += 1
        self.rejected += 1
        if len(self.rejections) < MAX_LISTED_REJECTIONS:
            line = _cut(f"row {row}: {reason}", MAX_LINE_CHARS)
            if self._rejections_chars + len(line) <= MAX_LISTED_BYTES:
                self.rejections.append(line)
                self._rejections_chars += len(line)

    def accept(self, row: int, warnings: Sequence[str] = ()) -> None:
        """Count an accepted row and list what it lost (`Lead.warnings`), by its row number."""
        self.rows_read += 1
        self.accepted += 1
        if not warnings:
            return
        self.warned += 1
        for warning in warnings:
            line = _cut(f"row {row}: {warning}", MAX_LINE_CHARS)
            if (
                len(self.warnings) < MAX_LISTED_WARNINGS
                and self._warnings_chars + len(line) <= MAX_LISTED_BYTES
            ):
                self.warnings.append(line)
                self._warnings_chars += len(line)
            else:
                self.warnings_not_listed += 1

    def list_columns(self, described: Mapping[str, str], ignored: Sequence[str]) -> None:
        """Record where each column goes (header -> field) and the ignored columns' notes,
        headers cut to MAX_HEADER_CHARS and each list to MAX_COLUMNS_CHARS; what does not fit
        is counted in a last entry ("... 12 more columns")."""
        columns: dict[str, str] = {}
        chars = 0
        for header, target in described.items():
            entry = (_cut(header, MAX_HEADER_CHARS), _cut(target, MAX_HEADER_CHARS + 20))
            chars += len(entry[0]) + len(entry[1])
            if chars > MAX_COLUMNS_CHARS:
                columns[f"... {len(described) - len(columns)} more columns"] = "not listed"
                break
            columns[entry[0]] = entry[1]
        notes: list[str] = []
        chars = 0
        for note in ignored:
            line = _cut(note, MAX_HEADER_CHARS + 40)
            chars += len(line)
            if chars > MAX_COLUMNS_CHARS:
                notes.append(f"... {len(ignored) - len(notes)} more ignored columns")
                break
            notes.append(line)
        self.columns = columns
        self.ignored_columns = notes

    def as_json(self) -> dict[str, Any]:
        return {
            "importId": self.import_id,
            "list": self.list_name,
            "state": self.state.value,
            "bytesReceived": self.bytes_received,
            "rowsRead": self.rows_read,
            "blankRows": self.blank_rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "warned": self.warned,
            "duplicatesMerged": self.duplicates_merged,
            "leads": self.leads,
            "published": self.published,
            "rejections": list(self.rejections),
            "rejectionsNotListed": self.rejected - len(self.rejections),
            "warnings": list(self.warnings),
            "warningsNotListed": self.warnings_not_listed,
            "columns": dict(self.columns),
            "ignoredColumns": list(self.ignored_columns),
            "error": self.error,
        }


def _cut(text: str, limit: int) -> str:
    """`text`, or its start and how long it was when longer than `limit`."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text):,} characters)"
