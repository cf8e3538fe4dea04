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
from collections.abc import Sequence
from pathlib import Path

import orjson

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


class LeadSpool:
    """Not thread-safe; one import uses it from one thread at a time (calls may hop threads)."""

    def __init__(self, path: Path | None) -> None:
        """`path` None: in memory (tests and tiny lists); otherwise a scratch file this spool
        deletes on `close`. Use `LeadSpool.scratch_file()` for a fresh one."""
        self.path = path
        self._db = sqlite3.connect(
            path or ":memory:", check_same_thread=False, isolation_level=None
        )
        # A scratch file: losing it in a crash only means the upload is repeated.
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -8000;"
            + _SCHEMA
        )
        self._count = 0
        self._cursor: sqlite3.Cursor | None = None

    @classmethod
    def scratch_file(cls, directory: str | None = None) -> LeadSpool:
        handle, name = tempfile.mkstemp(prefix="lead-import-", suffix=".sqlite", dir=directory)
        os.close(handle)
        return cls(Path(name))

    def add(self, leads: Sequence[tuple[int, Lead]]) -> int:
        """Store (row number, lead) pairs in file order; return how many were merged into a
        lead already stored (duplicates)."""
        if not leads:
            return 0
        self._db.execute("BEGIN")
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
        self._db.execute("COMMIT")
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
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
