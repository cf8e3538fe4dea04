"""A lead's first touch: where it came from, as the first value of each origin fact.

Of each of `FIRST_TOUCH_FACTS` (the write key's `source`, the UTM campaign's name, source and
medium, the lead list it was imported with), the first non-empty text value among the messages
scored for the lead, in the order they were scored, normalised (`normalised`). Kept once known:
a later campaign does not replace it. score keeps it per lead (`score.leads.first_touch`, keyed
by fact name) and sends it with every stage change (`LifecycleChanged.first_touch`); the
learning's `Activity` keeps its own origin the same way (`learned_first_touch`, one path for
both). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from services.score.engine.conditions import Facts
from shared.contracts import FirstTouch

MAX_TEXT = 80
"""Names and values longer than this are cut: a feature or a cohort names a kind, not a
payload."""
ORIGIN_FACTS = ("source", "context.campaign.name", "context.campaign.source",
                "context.campaign.medium")  # fmt: skip
"""Where a lead came from: the write key's source and the UTM campaign (Segment's
`context.campaign`)."""
IMPORT_LIST = "context.import.list"
"""The lead list an imported lead came with (a lead-list import's name)."""
FIRST_TOUCH_FACTS = (*ORIGIN_FACTS, IMPORT_LIST)
"""The facts of a lead's first touch."""
_FIELDS = {  # the `FirstTouch` field each fills
    "source": "source",
    IMPORT_LIST: "import_list",
    "context.campaign.name": "campaign",
    "context.campaign.source": "campaign_source",
    "context.campaign.medium": "campaign_medium",
}


def normalised(value: str) -> str:
    """Whitespace collapsed (and stripped), casefolded, at most `MAX_TEXT` characters."""
    return " ".join(value.split()).casefold()[:MAX_TEXT]


def learned_first_touch(
    known: Mapping[str, str] | None, facts: Facts, *, keys: Sequence[str] = FIRST_TOUCH_FACTS
) -> dict[str, str]:
    """What one scored message adds to a lead's first touch `known` (fact -> value): each of
    `keys` that `known` lacks and `facts` holds as text with something besides whitespace,
    normalised. Empty when it adds nothing (a lead that knows every key: nothing is read)."""
    learned: dict[str, str] = {}
    for key in keys:
        if known is not None and key in known:
            continue
        value = facts.get(key)
        if isinstance(value, str) and value.strip():
            learned[key] = normalised(value)
    return learned


def first_touch_of(messages: Iterable[Facts]) -> dict[str, str]:
    """A lead's first touch from the facts of its messages, in the order they were scored."""
    touch: dict[str, str] = {}
    for facts in messages:
        touch.update(learned_first_touch(touch, facts))
    return touch


def first_touch_part(touch: Mapping[str, str] | None) -> FirstTouch | None:
    """The contract's part of a first touch kept by fact name (None when nothing is known)."""
    if not touch:
        return None
    return FirstTouch(**{_FIELDS[key]: value for key, value in touch.items() if key in _FIELDS})
