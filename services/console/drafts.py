"""Drafts of versioned configuration (scoring rules, routing), kept by the console while an
editor works on one: `body` is what the owning service is sent (`{"yaml": ...}` or
`{"document": {...}}`), `parent` the version it started from, `problems` what the service said
of it the last time it was checked (None: it passed), `simulation_id` the simulation last
started for it, `published_as` the version it became."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import execute, fetch, fetchrow, json_document

Kind = Literal["rules", "routing"]


@dataclass(frozen=True)
class Draft:
    draft_id: str
    kind: Kind
    parent: str | None
    body: dict[str, Any]
    problems: str | None
    simulation_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    published_as: str | None


async def create_draft(
    session: AsyncSession, *, kind: Kind, parent: str | None, body: dict[str, Any], by: str
) -> Draft:
    row = await fetchrow(
        session,
        """
        INSERT INTO console.drafts (draft_id, kind, parent, body, created_by)
        VALUES ($1, $2, $3, $4::jsonb, $5)
        RETURNING *
        """,
        uuid.uuid4(),
        kind,
        parent,
        json_document(body),
        by,
    )
    assert row is not None
    return _draft(row)


async def get_draft(session: AsyncSession, kind: Kind, draft_id: str) -> Draft | None:
    """The draft, or None for an unknown (or malformed) id or another kind's draft."""
    try:
        key = uuid.UUID(draft_id)
    except ValueError:
        return None
    row = await fetchrow(
        session, "SELECT * FROM console.drafts WHERE draft_id = $1 AND kind = $2", key, kind
    )
    return None if row is None else _draft(row)


async def update_draft(
    session: AsyncSession, draft_id: str, *, body: dict[str, Any], problems: str | None
) -> None:
    """A new body and what the service said of it (a new body has no simulation yet)."""
    await execute(
        session,
        """
        UPDATE console.drafts
           SET body = $2::jsonb, problems = $3, simulation_id = NULL, updated_at = now()
         WHERE draft_id = $1
        """,
        uuid.UUID(draft_id),
        json_document(body),
        problems,
    )


async def note_simulation(session: AsyncSession, draft_id: str, simulation_id: str) -> None:
    await execute(
        session,
        "UPDATE console.drafts SET simulation_id = $2, updated_at = now() WHERE draft_id = $1",
        uuid.UUID(draft_id),
        simulation_id,
    )


async def note_published(session: AsyncSession, draft_id: str, version: str) -> None:
    await execute(
        session,
        "UPDATE console.drafts SET published_as = $2, updated_at = now() WHERE draft_id = $1",
        uuid.UUID(draft_id),
        version,
    )


async def recent_drafts(session: AsyncSession, kind: Kind, *, limit: int = 10) -> list[Draft]:
    """The kind's drafts not published, most recently changed first."""
    rows = await fetch(
        session,
        """
        SELECT * FROM console.drafts WHERE kind = $1 AND published_as IS NULL
         ORDER BY updated_at DESC LIMIT $2
        """,
        kind,
        limit,
    )
    return [_draft(row) for row in rows]


def _draft(row: asyncpg.Record) -> Draft:
    return Draft(
        draft_id=str(row["draft_id"]),
        kind=row["kind"],
        parent=row["parent"],
        body=row["body"],
        problems=row["problems"],
        simulation_id=row["simulation_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        published_as=row["published_as"],
    )
