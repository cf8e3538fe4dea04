"""The import report: what happened to every row, bounded in size whatever the file's size.

It doubles as the progress of an import in flight (`GET /v1/leads/import/{id}`): the counters
grow while the file streams in and while leads are published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAX_LISTED_REJECTIONS = 1000
MAX_LISTED_WARNINGS = 1000


class ImportState(StrEnum):
    RECEIVING = "receiving"  # the file is streaming in; rows are checked and merged
    PUBLISHING = "publishing"  # the whole file is read; leads are going to events.raw
    DONE = "done"  # every lead is acknowledged by the broker
    FAILED = "failed"  # stopped; `error` says why (nothing or part published: upload again)


@dataclass
class ImportReport:
    """Counters, the first MAX_LISTED_REJECTIONS rejections ("row 17: invalid email ...") and
    the first MAX_LISTED_WARNINGS warnings ("row 18: phone '555' dropped: not a valid number":
    the row was accepted without that value).

    Invariants once the file is read: rows_read = accepted + rejected (blank rows are counted
    apart), leads = accepted - duplicates_merged is the number of identify events, and `warned`
    (accepted rows with at least one value dropped) <= accepted.
    """

    import_id: str
    list_name: str
    key_source: str = field(default="", repr=False)
    """The write key's source that started it: only that source may read its progress."""
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

    def reject(self, row: int, reason: str) -> None:
        self.rows_read += 1
        self.rejected += 1
        if len(self.rejections) < MAX_LISTED_REJECTIONS:
            self.rejections.append(f"row {row}: {reason}")

    def accept(self, row: int, warnings: Sequence[str] = ()) -> None:
        """Count an accepted row and list what it lost (`Lead.warnings`), by its row number."""
        self.rows_read += 1
        self.accepted += 1
        if not warnings:
            return
        self.warned += 1
        listed = warnings[: MAX_LISTED_WARNINGS - len(self.warnings)]
        self.warnings.extend(f"row {row}: {warning}" for warning in listed)
        self.warnings_not_listed += len(warnings) - len(listed)

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
