"""The facts leadflow has actually seen, with their common values: what a rules editor offers
as the field and the value of a condition (the console's rules page), from a sample of the
stored history. Pure: `repository.sample_history_facts` reads the sample.

Values are offered only where they identify no one: never for a fact whose name says it holds
an email, a name, a phone, an id, a domain or a company (`learning.features.IDENTIFYING`, the
same list that keeps them out of models), nor for the visitor's IP address and user agent (any
fact `engine.stored_facts.personal_kind` names); and a value only once at least `MIN_LEADS`
leads had it, so a rare value cannot point at a person.

The history keeps the IP address and user agent only while a live rule reads them (then the
address truncated to its network: `engine.stored_facts`), so those facts are listed only when
the sampled messages were scored under such rules.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.score.engine.conditions import PROFILE_PREFIXES
from services.score.engine.stored_facts import personal_kind
from services.score.learning.features import IDENTIFYING

MIN_LEADS = 3
"""A value is offered once this many distinct leads had it."""
TOP_VALUES = 25
"""Values offered per fact, most common first."""
MAX_VALUE_CHARS = 80
"""Longer texts (a page URL with its query, a note) are no value to pick from a list."""
NO_VALUES = frozenset({"context.ip", "context.userAgent", "context.user_agent", "anonymousId",
                       "userId", "messageId", "message_id"})  # fmt: skip
"""Facts whose values are never offered, whatever their name's last part."""


@dataclass(frozen=True)
class FactSeen:
    """A fact name, in how many sampled messages it was present, whether fit rules may read it
    (a profile-side fact), and its common values (empty where none may be offered)."""

    field: str
    messages: int
    fit: bool
    values: tuple[str | int | float | bool, ...]


def facts_seen(sample: Iterable[tuple[str, Mapping[str, Any]]]) -> list[FactSeen]:
    """The facts of a sample of (lead_id, facts) rows, most often present first (then by
    name). A value counts once per lead, so one busy visitor does not make a value common."""
    present: Counter[str] = Counter()
    leads_by_value: dict[str, dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
    for lead_id, facts in sample:
        for field, value in facts.items():
            if value is None:
                continue
            present[field] += 1
            if _offers_values(field) and _offerable(value):
                leads_by_value[field][value].add(lead_id)
    catalogue = []
    for field, count in sorted(present.items(), key=lambda item: (-item[1], item[0])):
        common = sorted(
            ((value, len(leads)) for value, leads in leads_by_value.get(field, {}).items()
             if len(leads) >= MIN_LEADS),
            key=lambda item: (-item[1], str(item[0])),
        )  # fmt: skip
        catalogue.append(
            FactSeen(
                field=field,
                messages=count,
                fit=field.startswith(PROFILE_PREFIXES),
                values=tuple(value for value, _ in common[:TOP_VALUES]),
            )
        )
    return catalogue


def _offers_values(field: str) -> bool:
    return (
        field not in NO_VALUES
        and field.rpartition(".")[2] not in IDENTIFYING
        and personal_kind(field) is None
    )


def _offerable(value: Any) -> bool:
    if isinstance(value, str):
        return 0 < len(value) <= MAX_VALUE_CHARS
    return isinstance(value, bool | int | float)
