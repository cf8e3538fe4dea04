"""How a rules draft would move the SDR load per team and rep: each rep's SDR leads of the
last days beside what the router's preview says the draft would hand them (leads that would
become MQL) and take from them (leads that would drop below it). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.console.queries import RepLoad


@dataclass(frozen=True)
class LoadRow:
    team: str
    rep: str  # a rep's id, or a fallback queue's name
    name: str
    recent: int
    gained: int
    lost: int

    @property
    def with_draft(self) -> int:
        return self.recent + self.gained - self.lost


def load_rows(recent: Iterable[RepLoad], preview: Mapping[str, Any]) -> list[LoadRow]:
    """One row per rep or queue that has recent SDR leads or a change in the preview, by team
    then name. A preview's rep without a team (an account owner outside the routing) is under
    "account owners"."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for load in recent:
        rows[(load.team, load.rep)] = {"name": load.name or load.rep, "recent": load.leads,
                                       "gained": 0, "lost": 0}  # fmt: skip
    for rep in preview.get("reps", []):
        key = (rep.get("team") or "account owners", rep["rep_id"])
        row = rows.setdefault(key, {"name": rep.get("name") or rep["rep_id"], "recent": 0,
                                    "gained": 0, "lost": 0})  # fmt: skip
        row["gained"] += int(rep.get("gained", 0))
        row["lost"] += int(rep.get("lost", 0))
    for queue in preview.get("queues", []):
        key = next(((team, rep) for team, rep in rows if rep == queue["queue"]),
                   ("fallback queue", queue["queue"]))  # fmt: skip
        row = rows.setdefault(key, {"name": queue["queue"], "recent": 0, "gained": 0, "lost": 0})
        row["gained"] += int(queue.get("gained", 0))
        row["lost"] += int(queue.get("lost", 0))
    return [
        LoadRow(team=team, rep=rep, **values)
        for (team, rep), values in sorted(
            rows.items(), key=lambda item: (item[0][0], item[1]["name"])
        )
    ]
