"""Reps' availability in two clicks (services/router/rep_availability.py): one rep changed on the
live routing document, everything else as it was, and the reps as a page lists them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.router.rep_availability import RepChange, UnknownRep, rep_roster, with_rep_changed
from services.router.routing_config import RoutingConfig
from tests.unit.builders import NOW, routing_config

pytestmark = pytest.mark.unit

DOCUMENT: dict[str, Any] = {
    "version": "7",
    "teams": [
        {
            "name": "sdr-emea",
            "timezone": "Europe/Paris",
            "reps": [
                {"id": "rep-ada", "name": "Ada Lovelace", "email": "ada@example.com", "weight": 2},
                {
                    "id": "rep-grace",
                    "name": "Grace Hopper",
                    "email": "grace@example.com",
                    "daily_cap": 20,
                },
            ],
        },
        {
            "name": "sdr-inbound",
            "reps": [{"id": "rep-linus", "name": "Linus Pauling", "email": "lp@example.com"}],
        },
    ],
    "default_team": "sdr-inbound",
    "fallback_queue": "sdr-unassigned",
    "nurture": {"default": "general-nurture"},
    "sla": {"default": "4h"},
}


def grace(document: dict[str, Any]) -> dict[str, Any]:
    rep: dict[str, Any] = document["teams"][0]["reps"][1]
    assert rep["id"] == "rep-grace"
    return rep


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"active": False}, {"active": False, "daily_cap": 20}),
        ({"weight": 3}, {"weight": 3, "daily_cap": 20}),
        ({"daily_cap": 5}, {"daily_cap": 5}),
        ({"daily_cap": None}, {"daily_cap": None}),  # null: no cap any more
        (
            {"out_of_office": [{"from": "2026-03-02", "until": "2026-03-06"}]},
            {"out_of_office": [{"from": "2026-03-02", "until": "2026-03-06"}], "daily_cap": 20},
        ),
        ({"out_of_office": []}, {"out_of_office": [], "daily_cap": 20}),  # back in office
        ({}, {"daily_cap": 20}),  # nothing asked: nothing changes
    ],
)
def test_a_rep_change_sets_what_it_names_and_keeps_the_rest_of_the_rep(
    change: dict[str, Any], expected: dict[str, Any]
) -> None:
    changed = with_rep_changed(DOCUMENT, "rep-grace", RepChange.model_validate(change))

    assert grace(changed) == {
        "id": "rep-grace",
        "name": "Grace Hopper",
        "email": "grace@example.com",
        **expected,
    }


def test_a_rep_change_leaves_the_other_reps_the_rest_of_the_document_and_the_original_alone() -> (
    None
):
    original = copy.deepcopy(DOCUMENT)

    changed = with_rep_changed(DOCUMENT, "rep-grace", RepChange(weight=4))

    assert original == DOCUMENT, "the live version's document is not touched"
    grace(changed).pop("weight")
    assert changed == original, "only Grace's weight differs"
    # the team's time zone is still the team's: nothing inherited was written into the rep
    assert "timezone" not in grace(changed)


def test_an_unknown_rep_is_an_error_and_changes_nothing() -> None:
    with pytest.raises(UnknownRep, match="no rep 'rep-nobody'"):
        with_rep_changed(DOCUMENT, "rep-nobody", RepChange(active=False))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"weight": 0}, "teams.0.reps.1.weight"),
        ({"daily_cap": -1}, "teams.0.reps.1.daily_cap"),
    ],
)
def test_a_changed_rep_is_validated_with_the_whole_routing(
    change: dict[str, Any], field: str
) -> None:
    changed = with_rep_changed(DOCUMENT, "rep-grace", RepChange.model_validate(change))

    with pytest.raises(ValidationError) as refused:
        RoutingConfig.model_validate(changed)
    assert [".".join(map(str, e["loc"])) for e in refused.value.errors()] == [field]


@pytest.mark.parametrize(
    "change",
    [
        {"active": "no"},  # not a boolean
        {"weight": "3"},  # not an integer
        {"out_of_office": [{"from": "2026-03-06", "until": "2026-03-02"}]},  # backwards
        {"timezone": "Europe/Paris"},  # not one of the four fields
    ],
)
def test_a_change_of_the_wrong_shape_is_refused_before_it_touches_the_document(
    change: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        RepChange.model_validate(change)


# ---- the roster --------------------------------------------------------------------------------


def test_the_roster_lists_every_rep_with_whether_they_are_away_today() -> None:
    config = routing_config(
        teams=[
            {
                "name": "sdr-emea",
                "timezone": "Europe/Paris",
                "reps": [
                    {"id": "rep-ada", "name": "Ada", "email": "ada@example.com", "weight": 2},
                    {"id": "rep-grace", "name": "Grace", "email": "g@example.com", "active": False},
                    {
                        "id": "rep-alan",
                        "name": "Alan",
                        "email": "alan@example.com",
                        "daily_cap": 10,
                        "out_of_office": [{"from": "2026-03-02", "until": "2026-03-03"}],
                    },
                ],
            },
            {
                "name": "sdr-inbound",
                "reps": [
                    {
                        "id": "rep-linus",
                        "name": "Linus",
                        "email": "lp@example.com",
                        "out_of_office": [{"from": "2026-03-04", "until": "2026-03-04"}],
                    }
                ],
            },
        ],
        territories=[],
        default_team="sdr-inbound",
        suppression={},
    )

    roster = rep_roster(config, now=NOW)

    assert [(r["id"], r["team"], r["away_today"]) for r in roster] == [
        ("rep-ada", "sdr-emea", False),
        ("rep-grace", "sdr-emea", True),
        ("rep-alan", "sdr-emea", True),
        ("rep-linus", "sdr-inbound", False),  # away on Wednesday, not today
    ]
    alan = roster[2]
    assert alan == {
        "id": "rep-alan",
        "name": "Alan",
        "email": "alan@example.com",
        "team": "sdr-emea",
        "active": True,
        "weight": 1,
        "daily_cap": 10,
        "timezone": "Europe/Paris",
        "out_of_office": [{"from": "2026-03-02", "until": "2026-03-03"}],
        "away_today": True,
        "away_reason": "rep-alan out of office until 2026-03-03",
        "local_today": "2026-03-02",
    }
    assert roster[1]["away_reason"] == "rep-grace inactive"
    later = rep_roster(config, now=NOW + timedelta(days=2))
    assert [r["away_today"] for r in later] == [False, True, False, True]


def test_the_roster_offers_each_rep_their_own_calendar_day() -> None:
    # 02:30 UTC on Tuesday is still Monday evening in New York: an absence "today" entered for
    # the New York rep must start on Monday, the day the router judges her by.
    roster = rep_roster(routing_config(), now=datetime(2026, 3, 3, 2, 30, tzinfo=UTC))

    days = {r["id"]: r["local_today"] for r in roster}
    assert days["rep-ada"] == "2026-03-03"  # Paris, 03:30 on Tuesday
    assert days["rep-kat"] == "2026-03-02"  # New York, 21:30 on Monday
