"""A temporary SQLite file holding the leads of one import, merged by email.

Why a file and not a dict: a list may have millions of rows, and duplicates can be anywhere in
it, so the merge must see every row before anything is published, in bounded memory. SQLite
(stdlib) keeps a small page cache in memory and the rest on disk, and merges with one upsert.

Merging: the first non-empty value of a trait wins (a later duplicate row only fills traits the
earlier rows left empty), so the result does not depend on anything but the file's order. Leads
come out in the order their email first appeared in the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from services.ingest.lead_import.reading import UploadTooLarge
from services.ingest.lead_import.rows import Lead

_SCHEMA = """
CREATE TABLE leads (
    email TEXT PRIMARY KEY,
    first_row INTEGER NOT NULL,
    user_id TEXT,
    traits TEXT NOT NULL
);
CREATE INDEX leads_by_first_row ON leads (first_row);
"""
# json_patch(new, old): old's keys override new's, new fills what old lacks: first value wins.
_UPSERT = """
INSERT INTO leads (email, first_row, user_id, traits) VALUES (?, ?, ?, ?)
ON CONFLICT (email) DO UPDATE SET
    traits = json_patch(excluded.traits, leads.traits),
    user_id = coalesce(leads.user_id, excluded.user_id)
WHERE length(json_patch(excluded.traits, leads.traits)) <= ?
"""
MAX_MERGED_TRAITS = 65_536
"""Characters of JSON a merged lead may reach: a duplicate that would grow it past this adds
nothing (it still counts as merged), so one email repeated with ever new columns cannot build
an event larger than the broker accepts."""


class SpoolFull(UploadTooLarge):
    """The spool would pass its import's or the replica's byte limit (the client gets 413)."""


class SpoolQuota:
    """The bytes every spool of this replica may take together (the /tmp volume is shared by
    the imports running at once). Thread-safe.

    Each spool tells the quota its size after each batch and, before the next, is allowed what
    the others leave; SQLite enforces that allowance itself (`max_page_count`). Two imports
    growing at the same moment can pass the total by one batch each (a few hundred KB), so the
    volume is sized with some slack."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()

    def allowance(self, spool_id: int) -> int:
        """Bytes the spool `spool_id` may grow to now."""
        with self._lock:
            others = sum(size for key, size in self._sizes.items() if key != spool_id)
        return max(0, self.max_bytes - others)

    def record(self, spool_id: int, size: int) -> None:
        with self._lock:
            self._sizes[spool_id] = size

    def release(self, spool_id: int) -> None:
        with self._lock:
            self._sizes.pop(spool_id, None)

    @property
    def used(self) -> int:
        with self._lock:
            return sum(self._sizes.values())


class LeadSpool:
    """Not thread-safe; one import uses it from one thread at a time (calls may hop threads).

    Bounded: past `max_bytes` (or what `quota` leaves), `add` raises `SpoolFull` and the import
    is refused; `close` still deletes the file."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int | None = None,
        quota: SpoolQuota | None = None,
    ) -> None:
        """`path` None: in memory (tests and tiny lists); otherwise a scratch file this spool
        deletes on `close`. Use `LeadSpool.scratch_file()` for a fresh one."""
        self.path = path
        self._max_bytes = max_bytes
        self._quota = quota
        self._db = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        # A scratch file: losing it in a crash only means the upload is repeated.
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -8000;"
            + _SCHEMA
        )
        self._page_size: int = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._replica_bound = False  # whether the quota, not max_bytes, limits it now
        self._count = 0
        self._cursor: sqlite3.Cursor | None = None

    @classmethod
    def scratch_file(
        cls,
        directory: str | None = None,
        *,
        max_bytes: int | None = None,
        quota: SpoolQuota | None = None,
    ) -> LeadSpool:
        handle, name = tempfile.mkstemp(prefix="lead-import-", suffix=".sqlite", dir=directory)
        os.close(handle)
        try:
            return cls(Path(name), max_bytes=max_bytes, quota=quota)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise

    @property
    def size_bytes(self) -> int:
        pages: int = self._db.execute("PRAGMA page_count").fetchone()[0]
        return pages * self._page_size

    def _limit_size(self) -> None:
        """Let SQLite refuse to grow the file past what this spool may take now."""
        allowance = self._quota.allowance(id(self)) if self._quota is not None else None
        self._replica_bound = allowance is not None and (
            self._max_bytes is None or allowance < self._max_bytes
        )
        limit = allowance if self._replica_bound else self._max_bytes
        if limit is not None:
            # Below the current size SQLite keeps the current size: then nothing more fits.
            pages = max(limit // self._page_size, 1)
            self._db.execute(f"PRAGMA max_page_count = {int(pages)}")

    def _refusal(self) -> SpoolFull:
        if not self._replica_bound:
            return SpoolFull(
                f"the list needs more than {self._max_bytes:,} bytes of merge space, the limit "
                "of one import: split the list"
            )
        return SpoolFull(
            "the imports running on this replica use all their merge space; retry later or "
            "split the list"
        )

    def add(self, leads: Sequence[tuple[int, Lead]]) -> int:
        """Store (row number, lead) pairs in file order; return how many were merged into a
        lead already stored (duplicates)."""
        if not leads:
            return 0
        self._limit_size()
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                _UPSERT,
                [
                    (
                        lead.email,
                        row,
                        lead.user_id,
                        orjson.dumps(lead.traits).decode(),
                        MAX_MERGED_TRAITS,
                    )
                    for row, lead in leads
                ],
            )
            self._db.execute("COMMIT")  # a full disk may show only here
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):  # SQLITE_FULL may have rolled back already
                self._db.execute("ROLLBACK")
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                # The spool is given up (the import refused); its file goes on `close`.
                raise self._refusal() from None
            raise
        if self._quota is not None:
            self._quota.record(id(self), self.size_bytes)
        before = self._count
        self._count = self._db.execute("SELECT count(*) FROM leads").fetchone()[0]
        return len(leads) - (self._count - before)

    @property
    def lead_count(self) -> int:
        return self._count

    def next_leads(self, limit: int) -> list[tuple[int, Lead]]:
        """The next `limit` merged leads in first-seen order ([] when all were returned)."""
        if self._cursor is None:
            self._cursor = self._db.execute(
                "SELECT first_row, email, user_id, traits FROM leads ORDER BY first_row"
            )
        return [
            (row, Lead(email=email, user_id=user_id, traits=orjson.loads(traits)))
            for row, email, user_id, traits in self._cursor.fetchmany(limit)
        ]

    def close(self) -> None:
        self._db.close()
        if self._quota is not None:
            self._quota.release(id(self))
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
