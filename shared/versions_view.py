"""Versions of a versioned configuration (`shared.config_versions`) as an operator reads them:
one table for every kind (scoring rules, routing, models), printed by the services' commands."""

from __future__ import annotations

from collections.abc import Sequence

from shared.config_versions import ConfigVersion, Publication
from shared.operator import table


def versions_table(
    versions: Sequence[ConfigVersion], *, live: str | None, saved: str = "saved (UTC)"
) -> str:
    """Newest first, the live one marked; `saved`: the time column's title."""
    rows = [
        (
            v.version + (" (live)" if v.version == live else ""),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.author,
            v.parent,
            v.note,
        )
        for v in versions
    ]
    return table(["version", saved, "by", "parent", "note"], rows)


def publications_table(publications: Sequence[Publication]) -> str:
    """Newest first: when, which version, the one it replaced, who, why."""
    rows = [
        (f"{p.published_at:%Y-%m-%d %H:%M}", p.version, p.previous, p.published_by, p.note)
        for p in publications
    ]
    return table(["published (UTC)", "version", "replaced", "by", "note"], rows)
