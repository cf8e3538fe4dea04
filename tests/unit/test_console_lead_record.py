"""What the console knows of a lead (`services.console.lead_record`): a lead enters the read
model at its first stage change; a change applied twice changes nothing; each change brings the
lead's newest profile and first touch (a field a change lacks keeps the value held); an older
score never replaces a newer one; a score for a lead not yet counted is not kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.console.lead_record import (
    LeadRecord,
    Move,
    moves_from_json,
    moves_to_json,
    on_lifecycle,
    on_scored,
)
from shared.contracts import LeadScored, LifecycleChanged, Score, Stage
from shared.topics import LEADS_LIFECYCLE, LEADS_SCORED

T0 = datetime(2026, 3, 2, 9, 15, 40, tzinfo=UTC)
LIFECYCLE_EXAMPLE: dict[str, Any] = orjson.loads(LEADS_LIFECYCLE.examples_file.read_bytes())[0]
SCORED_EXAMPLE: dict[str, Any] = orjson.loads(LEADS_SCORED.examples_file.read_bytes())[1]
PROFILE = LIFECYCLE_EXAMPLE["profile"]
"""María González, VP of Sales Operations at Northwind Logistics, ES (firmographics: the same
company name)."""
FIRST_TOUCH = {"source": "website", "import_list": "webinar 2026-02", "campaign": "spring-2026"}
SCORE_A = {"fit": 35, "behaviour": 15, "total": 50, "grade": "A"}
SCORE_B = {"fit": 10, "behaviour": 15, "total": 25, "grade": "B"}


def change(n: int = 1, **fields: Any) -> LifecycleChanged:
    """The lead's `n`th stage change, `n` hours after T0 (anonymous -> known by default), with
    the example's profile and firmographics, first touch FIRST_TOUCH and score SCORE_A."""
    defaults: dict[str, Any] = {
        "transition_id": f"lead-1:t{n}",
        "lead_id": "lead-1",
        "from_stage": "anonymous",
        "to_stage": "known",
        "at": T0 + timedelta(hours=n - 1),
        "received_at": T0 + timedelta(hours=n - 1),
        "skipped_stages": [],
        "first_touch": FIRST_TOUCH,
        "score": SCORE_A,
        "likelihood": None,
    }
    return LifecycleChanged.model_validate({**LIFECYCLE_EXAMPLE, **defaults, **fields})


def scored(at: datetime, **fields: Any) -> LeadScored:
    """A score change of lead-1 at `at` (grade B, likelihood 0.3127 by default)."""
    defaults: dict[str, Any] = {"lead_id": "lead-1", "scored_at": at, "score": SCORE_B}
    return LeadScored.model_validate({**SCORED_EXAMPLE, **defaults, **fields})


def profile(**fields: Any) -> dict[str, Any]:
    return {**PROFILE, **fields}


def entered() -> LeadRecord:
    return on_lifecycle(None, change(1))


# --- entering ------------------------------------------------------------------------------


def test_a_lead_enters_at_its_first_stage_change() -> None:
    record = on_lifecycle(None, change(1))

    assert record == LeadRecord(
        lead_id="lead-1",
        created_at=T0,
        stage=Stage.KNOWN,
        stage_at=T0,
        moves=(Move("lead-1:t1", T0, Stage.ANONYMOUS, Stage.KNOWN),),
        email="maria.gonzalez@northwind-logistics.com",
        name="María González",
        company="Northwind Logistics",
        title="VP of Sales Operations",
        country="ES",
        source="website",
        import_list="webinar 2026-02",
        campaign="spring-2026",
        score=Score.model_validate(SCORE_A),
        score_at=T0,
        likelihood=None,
    )
    assert record.grade == "A"


def test_a_lead_whose_first_change_is_from_a_later_stage_enters_there() -> None:
    record = on_lifecycle(None, change(1, from_stage="lead", to_stage="mql"))

    assert (record.created_at, record.stage) == (T0, Stage.MQL)
    assert record.moves == (Move("lead-1:t1", T0, Stage.LEAD, Stage.MQL),)


def test_a_score_for_a_lead_not_counted_yet_is_not_kept() -> None:
    assert on_scored(None, scored(T0)) is None


# --- moving ------------------------------------------------------------------------------


def test_each_change_moves_the_lead_and_its_moves_stay_in_order() -> None:
    record = entered()
    record = on_lifecycle(record, change(2, from_stage="known", to_stage="lead"))
    record = on_lifecycle(
        record, change(3, from_stage="lead", to_stage="sql", skipped_stages=["mql"], by_sales=True)
    )

    assert (record.stage, record.stage_at, record.created_at) == (
        Stage.SQL,
        T0 + timedelta(hours=2),
        T0,
    )
    assert record.moves == (
        Move("lead-1:t1", T0, Stage.ANONYMOUS, Stage.KNOWN),
        Move("lead-1:t2", T0 + timedelta(hours=1), Stage.KNOWN, Stage.LEAD),
        Move("lead-1:t3", T0 + timedelta(hours=2), Stage.LEAD, Stage.SQL, (Stage.MQL,)),
    )
    assert record.knows("lead-1:t2")
    assert not record.knows("lead-1:t4")


@pytest.mark.parametrize(
    "later",
    [
        0,  # the same change again, at once
        1,  # after a later change
        2,  # after two
    ],
)
def test_a_redelivered_change_is_applied_once(later: int) -> None:
    record = entered()
    for n in range(2, 2 + later):
        record = on_lifecycle(record, change(n, from_stage="known", to_stage="lead"))

    again = on_lifecycle(record, change(1))

    assert again is record


def test_a_redelivered_change_brings_no_newer_profile_or_score() -> None:
    record = entered()

    again = on_lifecycle(
        record, change(1, profile=profile(email="someone.else@example.com"), score=SCORE_B)
    )

    assert again is record


def test_the_lead_entered_the_funnel_at_its_earliest_change() -> None:
    # A change told late (an older time than the one held) does not move the entry later.
    record = on_lifecycle(None, change(2, from_stage="known", to_stage="lead"))
    record = on_lifecycle(record, change(1))

    assert record.created_at == T0


# --- profile and first touch ---------------------------------------------------------------

NEW_PROFILE = {
    "email": "m.gonzalez@northwind.example",
    "first_name": "Maria",
    "last_name": "Gonzalez Ruiz",
    "title": "Chief Revenue Officer",
    "company": "Northwind Group",
    "country": "PT",
}
EMPTY_PROFILE = dict.fromkeys(("email", "first_name", "last_name", "title", "company", "country"))
HELD = {
    "email": "maria.gonzalez@northwind-logistics.com",
    "name": "María González",
    "company": "Northwind Logistics",
    "title": "VP of Sales Operations",
    "country": "ES",
    "source": "website",
    "import_list": "webinar 2026-02",
    "campaign": "spring-2026",
}


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        pytest.param(
            {"profile": profile(**NEW_PROFILE)},
            {
                "email": "m.gonzalez@northwind.example",
                "name": "Maria Gonzalez Ruiz",
                "company": "Northwind Group",
                "title": "Chief Revenue Officer",
                "country": "PT",
            },
            id="a newer profile is taken",
        ),
        pytest.param(
            {"profile": profile(**EMPTY_PROFILE), "firmographics": None},
            {},
            id="a profile with nothing keeps every value held",
        ),
        pytest.param(
            {"profile": profile(email=None, country=None)},
            {},
            id="a missing email or country keeps the one held",
        ),
        pytest.param(
            {"profile": profile(first_name="Mary", last_name=None)},
            {"name": "Mary"},
            id="a first name alone is the name",
        ),
        pytest.param(
            {"profile": profile(first_name=None, last_name="Gonzalez")},
            {"name": "Gonzalez"},
            id="a last name alone is the name",
        ),
        pytest.param(
            {"profile": profile(first_name=None, last_name=None)},
            {},
            id="no name keeps the name held",
        ),
        pytest.param(
            {
                "profile": profile(company=None),
                "firmographics": {**LIFECYCLE_EXAMPLE["firmographics"], "company_name": "NW AG"},
            },
            {"company": "NW AG"},
            id="no company in the profile: the firmographics' company name",
        ),
        pytest.param(
            {"profile": profile(company=None), "firmographics": None},
            {},
            id="no company anywhere keeps the company held",
        ),
        pytest.param(
            {"first_touch": None},
            {},
            id="no first touch keeps the one held",
        ),
        pytest.param(
            {"first_touch": {"source": None, "import_list": None, "campaign": None}},
            {},
            id="a first touch with nothing keeps every fact held",
        ),
        pytest.param(
            {"first_touch": {"source": "crm-import", "import_list": None, "campaign": None}},
            {"source": "crm-import"},
            id="a first touch fact is taken, the missing ones kept",
        ),
    ],
)
def test_a_change_brings_the_newest_profile_and_first_touch_and_keeps_what_it_lacks(
    later: dict[str, Any], expected: dict[str, str]
) -> None:
    record = on_lifecycle(entered(), change(2, from_stage="known", to_stage="lead", **later))

    shown = {name: getattr(record, name) for name in HELD}
    assert shown == {**HELD, **expected}


def test_a_first_change_without_any_profile_leaves_the_fields_empty() -> None:
    record = on_lifecycle(
        None, change(1, profile=profile(**EMPTY_PROFILE), firmographics=None, first_touch=None)
    )

    assert {name: getattr(record, name) for name in HELD} == dict.fromkeys(HELD)


# --- scores --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scored_after", "taken"),
    [
        (timedelta(minutes=5), True),  # a newer score replaces the change's
        (timedelta(0), True),  # of the same time: the later message's
        (-timedelta(seconds=1), False),  # an older score never replaces a newer one
        (-timedelta(days=3), False),
    ],
)
def test_a_score_change_is_taken_unless_older_than_the_score_held(
    scored_after: timedelta, taken: bool
) -> None:
    record = entered()  # SCORE_A at T0, no likelihood

    after = on_scored(record, scored(T0 + scored_after))

    assert after is not None
    if taken:
        assert (after.grade, after.score_at, after.likelihood) == ("B", T0 + scored_after, 0.3127)
    else:
        assert after == record


def test_a_stage_change_older_than_the_score_held_moves_the_lead_but_keeps_the_score() -> None:
    # leads.scored and leads.lifecycle are two topics: the newer score may be read first.
    record = on_scored(entered(), scored(T0 + timedelta(hours=3)))
    assert record is not None

    moved = on_lifecycle(record, change(2, from_stage="known", to_stage="lead", score=SCORE_A))

    assert (moved.stage, moved.grade) == (Stage.LEAD, "B")
    assert (moved.score_at, moved.likelihood) == (T0 + timedelta(hours=3), 0.3127)


def test_a_newer_stage_change_brings_its_score_and_likelihood() -> None:
    record = on_scored(entered(), scored(T0 + timedelta(minutes=10)))
    assert record is not None
    likelihood = {"probability": 0.61, "model_version": "5", "horizon_days": 90.0}

    moved = on_lifecycle(
        record,
        change(2, from_stage="known", to_stage="mql", score=SCORE_A, likelihood=likelihood),
    )

    assert (moved.grade, moved.score_at, moved.likelihood) == ("A", T0 + timedelta(hours=1), 0.61)


def test_a_score_change_keeps_the_stage_and_profile() -> None:
    record = entered()

    after = on_scored(record, scored(T0 + timedelta(minutes=1)))

    assert after is not None
    assert after.stage == record.stage
    assert after.moves == record.moves
    assert after.email == record.email


# --- stored form of the moves --------------------------------------------------------------

MOVES = (
    Move("lead-1:t1", T0, Stage.ANONYMOUS, Stage.KNOWN),
    Move("lead-1:t2", T0 + timedelta(microseconds=123_456), Stage.KNOWN, Stage.LEAD),
    Move(
        "lead-1:t3",
        datetime(2026, 3, 5, 18, 0, tzinfo=UTC),
        Stage.LEAD,
        Stage.CUSTOMER,
        (Stage.MQL, Stage.SQL, Stage.SQO),
    ),
)


@pytest.mark.parametrize(
    "moves",
    [
        (),  # no moves
        MOVES[:1],
        MOVES,  # with microseconds and skipped stages
    ],
)
def test_moves_round_trip_through_their_stored_json(moves: tuple[Move, ...]) -> None:
    stored = json.loads(json.dumps(moves_to_json(moves)))  # as the database gives it back

    assert moves_from_json(stored) == moves


def test_the_stored_form_of_a_move_is_compact() -> None:
    assert moves_to_json(MOVES[2:]) == [
        ["lead-1:t3", "2026-03-05T18:00:00+00:00", "lead", "customer", ["mql", "sql", "sqo"]]
    ]


def test_a_move_read_back_keeps_its_time_zone() -> None:
    (move,) = moves_from_json(moves_to_json(MOVES[:1]))

    assert move.at.utcoffset() == timedelta(0)
