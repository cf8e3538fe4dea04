"""score keeps facts without their nulls (pictures, history, the facts rules read): a null fact
and a missing one must pass and fail the same tests, under every operator."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.score.engine.conditions import FieldTest, facts_of, profile_facts_of
from services.score.engine.ruleset import load_rules
from services.score.engine.scoring import ScoreState, score_event
from services.score.handler import _without_nulls
from services.score.repository import LeadPicture
from tests.unit.builders import enriched_event

RULES = load_rules(Path(__file__).resolve().parents[2] / "services/score/rules/default.yaml")


@pytest.mark.parametrize(
    "test",
    [
        {"equals": "x"}, {"equals": 0}, {"equals": False}, {"in": ["x", 1]}, {"contains": "x"},
        {"regex": ".*"}, {"at_least": 0}, {"below": 1}, {"exists": True}, {"exists": False},
    ],
)  # fmt: skip
def test_a_null_fact_is_a_missing_fact(test: dict[str, Any]) -> None:
    condition = FieldTest.model_validate({"field": "f", **test})
    assert condition.holds({"f": None}) == condition.holds({})
    assert condition.holds(_without_nulls({"f": None, "g": 1})) == condition.holds({"f": None})


def test_rules_give_the_same_points_without_the_nulls() -> None:
    """A lead's events scored with their facts as built and without the nulls, side by side:
    the same ledger lines at every step (fit and behaviour, limits and caps included)."""
    rng = random.Random(3)
    with_nulls, without = ScoreState(), ScoreState()
    for index in range(200):
        event = enriched_event(
            type=rng.choice(["page", "track"]),
            event=rng.choice([None, "Demo Requested", "Webinar Attended", "Email Delivered"]),
            properties={"path": rng.choice(["/pricing", "/careers", None]), "title": None},
            profile={"seniority": rng.choice(["vp", None]), "country": rng.choice(["US", None])},
        )
        facts = facts_of(event)
        assert None in facts.values()
        kept = _without_nulls(facts)
        assert None not in kept.values()
        at, message_id = event.timestamp, f"m{index}"
        a = score_event(RULES, with_nulls, facts, at=at, message_id=message_id, behaviour=True)
        b = score_event(RULES, without, kept, at=at, message_id=message_id, behaviour=True)
        assert a.lines == b.lines
        with_nulls, without = a.state, b.state
    assert with_nulls.fit
    assert with_nulls.awards


def test_the_pictures_facts_leave_out_fields_without_a_value() -> None:
    event = enriched_event(
        profile={"email": "a@b.io", "seniority": "vp"},
        firmographics={"domain": "b.io", "employee_count": 0, "industry": None},
    )
    picture = profile_facts_of(event)
    assert None not in picture.values()
    assert picture["profile.seniority"] == "vp"
    assert picture["profile.free_mail"] is False  # false is a value
    assert picture["firmographics.employee_count"] == 0  # so is zero
    assert "profile.phone" not in picture
    assert "firmographics.industry" not in picture
    assert all(facts_of(event)[key] == value for key, value in picture.items())


def test_a_kept_picture_is_stored_without_its_nulls_and_reads_back_equal() -> None:
    event = enriched_event(
        profile={"email": "a@b.io", "seniority": "vp"},
        firmographics={"domain": "b.io", "employee_count": 0, "industry": None},
        consent={"reasons": ["form"]},
    )
    picture = LeadPicture.of(event, facts=profile_facts_of(event))
    stored = orjson.loads(picture.model_dump_json())
    assert "phone" not in stored["profile"]
    assert "industry" not in stored["firmographics"]
    assert stored["firmographics"]["employee_count"] == 0
    assert stored["account"] is None  # no account: said, not left out
    assert LeadPicture.model_validate(stored) == picture
    assert LeadPicture.model_validate({**stored, "from_an_older_version": 1}) == picture
