"""The routing versions as an operator reads them (`python -m services.router versions`): which
is live, who saved each and why, and the latest publications. Pure: takes what
`shared.config_versions` returns."""

from __future__ import annotations

from collections.abc import Sequence

from shared.config_versions import ConfigVersion, Publication
from shared.operator import table


def render_versions(versions: Sequence[ConfigVersion], *, live: str | None) -> str:
    if not versions:
        return "no routing version yet: the router publishes its routing file when it starts"
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
    return table(["version", "saved (UTC)", "by", "parent", "note"], rows)


def render_publications(publications: Sequence[Publication]) -> str:
    rows = [
        (
            f"{p.published_at:%Y-%m-%d %H:%M}",
            p.version,
            p.previous,
            p.published_by,
            p.note,
        )
        for p in publications
    ]
    return table(["published (UTC)", "version", "replaced", "by", "note"], rows)
