"""A lead's first touch: the first non-empty value of each origin fact, normalised, kept once
known; the learning's `Activity` keeps its origin by the same function."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.score.engine.first_touch import (
    FIRST_TOUCH_FACTS,
    ORIGIN_FACTS,
    first_touch_of,
    first_touch_part,
    learned_first_touch,
)
from services.score.learning.activity import Activity
from shared.contracts import FirstTouch, LifecycleChanged

pytestmark = pytest.mark.unit

CAMPAIGN = "context.campaign.name"
LIST = "context.import.list"

# (what the lead knows, the message's facts, what the message adds)
LEARNED: list[tuple[dict[str, str] | None, dict[str, Any], dict[str, str]]] = [
    # a new lead: every origin fact with text
    (None, {"source": "website", CAMPAIGN: "spring", "context.campaign.source": "linkedin",
            "context.campaign.medium": "paid", LIST: "tradeshow", "event": "Demo Requested"},
     {"source": "website", CAMPAIGN: "spring", "context.campaign.source": "linkedin",
      "context.campaign.medium": "paid", LIST: "tradeshow"}),
    ({}, {"source": "website"}, {"source": "website"}),
    # normalised: whitespace collapsed and stripped, casefolded, cut at 80 characters
    (None, {CAMPAIGN: "  Spring\t Launch \n2026 "}, {CAMPAIGN: "spring launch 2026"}),
    (None, {"source": "Straße"}, {"source": "strasse"}),
    (None, {CAMPAIGN: "X" * 200}, {CAMPAIGN: "x" * 80}),
    (None, {CAMPAIGN: " " + "ab " * 50}, {CAMPAIGN: ("ab " * 27)[:80]}),
    # nothing to learn: empty, blank, not text, null, absent
    (None, {CAMPAIGN: ""}, {}),
    (None, {CAMPAIGN: " \t\n"}, {}),
    (None, {CAMPAIGN: 42, "source": True, LIST: ["a"]}, {}),
    (None, {CAMPAIGN: None}, {}),
    (None, {"type": "track", "event": "Demo Requested"}, {}),
    (None, {"context.campaign": "spring"}, {}),  # a campaign that is no object: no name
    # the first value wins: a known fact is never replaced, a missing one is filled
    ({"source": "import"}, {"source": "website", CAMPAIGN: "autumn"}, {CAMPAIGN: "autumn"}),
    ({key: "first" for key in FIRST_TOUCH_FACTS}, {key: "later" for key in FIRST_TOUCH_FACTS}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("known", "facts", "learned"), LEARNED)
def test_a_message_adds_what_the_lead_does_not_know_yet(
    known: dict[str, str] | None, facts: dict[str, Any], learned: dict[str, str]
) -> None:
    before = None if known is None else dict(known)

    assert learned_first_touch(known, facts) == learned
    assert known == before  # pure: the known touch is left as it is


class _Untouchable(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:
        raise AssertionError(f"read {key}")


def test_a_lead_that_knows_every_fact_reads_nothing() -> None:
    known = {key: "first" for key in FIRST_TOUCH_FACTS}

    assert learned_first_touch(known, _Untouchable()) == {}


# (the facts of a lead's messages in the order scored, its first touch)
HISTORIES: list[tuple[list[dict[str, Any]], dict[str, str]]] = [
    ([], {}),
    ([{"type": "page"}], {}),
    ([{"source": "Website", CAMPAIGN: "Spring"}, {"source": "api", CAMPAIGN: "Autumn"}],
     {"source": "website", CAMPAIGN: "spring"}),
    # each fact its own first value, from whichever message first had it
    ([{"source": "website"}, {CAMPAIGN: "  "}, {CAMPAIGN: "autumn", "source": "api"},
      {LIST: "Webinar  List"}, {LIST: "purchased", CAMPAIGN: "winter"}],
     {"source": "website", CAMPAIGN: "autumn", LIST: "webinar list"}),
]  # fmt: skip


@pytest.mark.parametrize(("messages", "touch"), HISTORIES)
def test_first_touch_of_a_history_keeps_the_first_value_of_each_fact(
    messages: list[dict[str, Any]], touch: dict[str, str]
) -> None:
    assert first_touch_of(messages) == touch


def test_activity_keeps_its_origin_by_the_same_function() -> None:
    messages = [
        {"source": "Import", CAMPAIGN: " "},
        {"source": "website", CAMPAIGN: "Spring  Launch", "context.campaign.medium": "Paid"},
        {CAMPAIGN: "autumn", LIST: "tradeshow", "context.campaign.source": "LinkedIn"},
    ]
    activity = Activity()
    for facts in messages:
        activity.observe(facts, at=datetime(2026, 3, 2, tzinfo=UTC), behaviour=False, keep_s=1.0)

    touch = first_touch_of(messages)
    assert activity.origin == {key: touch[key] for key in ORIGIN_FACTS if key in touch}
    assert activity.origin == {"source": "import", CAMPAIGN: "spring launch",
                               "context.campaign.medium": "paid",
                               "context.campaign.source": "linkedin"}  # fmt: skip
    assert activity.lists == [touch[LIST]]


def test_the_contract_part_names_each_fact() -> None:
    touch = {key: key.rpartition(".")[2] for key in FIRST_TOUCH_FACTS}

    assert first_touch_part(touch) == FirstTouch(
        source="source", import_list="list", campaign="name", campaign_source="source",
        campaign_medium="medium",
    )  # fmt: skip
    assert first_touch_part({"source": "website"}) == FirstTouch(source="website")
    assert first_touch_part({}) is None
    assert first_touch_part(None) is None
    assert LifecycleChanged.model_fields["first_touch"].default is None
