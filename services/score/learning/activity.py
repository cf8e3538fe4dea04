"""What a lead did and where it came from, as the model's features need it (`Activity`).

Built by feeding a lead's messages in the order they were scored (`observe`): live, for each
message the handler scores while a model is published; for training, from the stored history
up to a cut-off. One path for both, so what the model learned from and what it scores live are
the same numbers. Pure; bounded in size whatever a lead sends.

Kinds of behaviour: a tracking call is `event:<name>` (casefolded), a page view
`page:<first path segment>` (`/pricing/enterprise` is `page:/pricing`), a screen
`screen:<name>`. Every kind counts, also those no rule mentions: that is where the learning is.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.score.engine.conditions import Facts
from services.score.engine.first_touch import (
    IMPORT_LIST,
    ORIGIN_FACTS,
    learned_first_touch,
    normalised,
)
from services.score.engine.rescoring import HistoryItem

MAX_KINDS = 200
"""Kinds kept per lead; a sender inventing event names cannot grow a lead's activity further
(later new kinds are not counted; the ones kept still are)."""
MAX_RECENT = 100
"""Occurrence times kept per kind (within the longest window): counts saturate there."""
MAX_LISTS = 5
# Names and values are `normalised` (cut at `first_touch.MAX_TEXT`: a feature names a kind, not
# a payload). Where a lead came from (`origin`) is its first touch (`learned_first_touch`).


def kind_of(facts: Facts) -> str | None:
    """The behaviour kind of a tracking call's facts; None for a call that is no behaviour."""
    call = facts.get("type")
    if call == "track":
        name = facts.get("event")
        return f"event:{normalised(name)}" if isinstance(name, str) and name.strip() else None
    if call == "page":
        path = facts.get("page.path")
        if not isinstance(path, str) or not path.strip():
            name = facts.get("name")
            return f"page:{normalised(name)}" if isinstance(name, str) and name.strip() else None
        return f"page:{section_of(path)}"
    if call == "screen":
        name = facts.get("name")
        return f"screen:{normalised(name)}" if isinstance(name, str) and name.strip() else None
    return None


def section_of(path: str) -> str:
    """A page path's first segment (`/pricing/enterprise` -> `/pricing`, `` -> `/`)."""
    first = path.strip().split("?", 1)[0].split("#", 1)[0].strip("/").split("/", 1)[0]
    return "/" + normalised(first)


@dataclass
class Activity:
    """A lead's behaviour counts and origin. `recent`: each kind's occurrence times (epoch
    seconds, ascending) within `keep_s` of the newest one seen; `totals`: occurrences ever.
    Mutable: `observe` adds to it in place (the handler keeps one per lead in a batch)."""

    origin: dict[str, str] = field(default_factory=dict)
    lists: list[str] = field(default_factory=list)
    recent: dict[str, list[float]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def observe(self, facts: Facts, *, at: datetime, behaviour: bool, keep_s: float) -> None:
        """Add one scored message: its origin facts (the first value of each is kept), its
        import list, and, for a tracking call (`behaviour`), one occurrence of its kind at
        `at`. Times older than `keep_s` before the newest occurrence of a kind are dropped."""
        self.origin.update(learned_first_touch(self.origin, facts, keys=ORIGIN_FACTS))
        listed = facts.get(IMPORT_LIST)
        if isinstance(listed, str) and listed.strip() and len(self.lists) < MAX_LISTS:
            name = normalised(listed)
            if name not in self.lists:
                self.lists.append(name)
        kind = kind_of(facts) if behaviour else None
        if kind is None:
            return
        if kind not in self.totals and len(self.totals) >= MAX_KINDS:
            return
        self.totals[kind] = self.totals.get(kind, 0) + 1
        times = self.recent.setdefault(kind, [])
        bisect.insort(times, at.timestamp())
        horizon = times[-1] - keep_s
        drop = bisect.bisect_left(times, horizon)
        if drop or len(times) > MAX_RECENT:
            del times[: max(drop, len(times) - MAX_RECENT)]

    def count(self, kind: str, *, since: float, until: float) -> int:
        """Occurrences of `kind` with `since < time <= until` (epoch seconds)."""
        times = self.recent.get(kind, ())
        return bisect.bisect_right(times, until) - bisect.bisect_right(times, since)

    def to_json(self) -> dict[str, Any]:
        """A compact JSON form (`score.leads.activity`); `from_json` reads it back."""
        return {"o": self.origin, "l": self.lists, "r": self.recent, "t": self.totals}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Activity:
        return cls(
            origin=dict(value.get("o", {})),
            lists=list(value.get("l", [])),
            recent={kind: list(times) for kind, times in value.get("r", {}).items()},
            totals=dict(value.get("t", {})),
        )


def activity_of(items: Iterable[HistoryItem], *, keep_s: float) -> Activity:
    """A lead's activity from its stored history (items in the order they were scored)."""
    activity = Activity()
    for item in items:
        activity.observe(item.facts, at=item.at, behaviour=item.behaviour, keep_s=keep_s)
    return activity
