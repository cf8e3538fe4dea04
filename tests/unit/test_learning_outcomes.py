"""What a lead's CRM outcomes teach (`outcomes.label`): converted or not, as of a cut-off that
comes before everything the label is made of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.score.learning.outcomes import (
    Labelled,
    OutcomePolicy,
    SalesOutcome,
    Unlabelled,
    label,
)

FIRST_SEEN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DEFAULT = OutcomePolicy()  # cut-off 30 days after the first message, horizon 90 days after it


def day(n: float) -> datetime:
    return FIRST_SEEN + timedelta(days=n)


def outcome(name: str, at_day: float, result: str = "applied") -> SalesOutcome:
    return SalesOutcome(name, result, day(at_day))


LATE = day(400)  # every horizon over


@pytest.mark.parametrize(
    ("outcomes", "now", "expected"),
    [
        # won within the horizon: positive, known when it was won
        ([outcome("won", 60)], LATE, Labelled(True, day(30), day(60))),
        ([outcome("lost", 50)], LATE, Labelled(False, day(30), day(50))),
        ([outcome("disqualified", 45)], LATE, Labelled(False, day(30), day(45))),
        # no outcome and the horizon over: negative, known at its end
        ([], LATE, Labelled(False, day(30), day(120))),
        ([], day(119), Unlabelled("still open")),
        ([], day(120), Labelled(False, day(30), day(120))),  # the horizon ends at its last day
        ([outcome("won", 120)], LATE, Labelled(True, day(30), day(120))),  # on its last day
        ([outcome("won", 130)], LATE, Labelled(False, day(30), day(120))),  # too late
        ([outcome("won", 130)], day(125), Labelled(False, day(30), day(120))),
        # lost, then won back within the horizon: positive, and contradicting
        ([outcome("lost", 40), outcome("won", 80)], LATE, Labelled(True, day(30), day(80), True)),
        # a customer reported lost: the lifecycle refused it, it changes nothing (but is noted)
        (
            [outcome("won", 60), outcome("lost", 70, "refused")],
            LATE,
            Labelled(True, day(30), day(60), True),
        ),
        # outcomes that do not hold count for nothing
        ([outcome("won", 60, "superseded")], LATE, Labelled(False, day(30), day(120))),
        ([outcome("won", 60, "refused")], LATE, Labelled(False, day(30), day(120))),
        ([outcome("lost", 50, "refused")], day(100), Unlabelled("still open")),
        ([outcome("won", 60, "unchanged")], LATE, Labelled(True, day(30), day(60))),
        # not a conversion either way
        ([outcome("qualified", 50)], day(100), Unlabelled("still open")),
        ([outcome("rejected", 50)], LATE, Labelled(False, day(30), day(120))),
    ],
)
def test_the_label_of_a_lead_under_the_default_policy(
    outcomes: list[SalesOutcome], now: datetime, expected: Labelled | Unlabelled
) -> None:
    found = label(first_seen=FIRST_SEEN, mql_at=None, outcomes=outcomes, policy=DEFAULT, now=now)

    assert found == expected


@pytest.mark.parametrize(
    ("outcomes", "now", "expected"),
    [
        # accepted on day 10: the cut-off is that day, the horizon ends 90 days later
        (
            [outcome("accepted", 10), outcome("won", 60)],
            LATE,
            Labelled(True, day(10), day(60)),
        ),
        ([outcome("accepted", 10)], day(101), Labelled(False, day(10), day(100))),
        ([outcome("accepted", 10)], day(99), Unlabelled("still open")),
        ([outcome("accepted", 10), outcome("won", 105)], LATE, Labelled(False, day(10), day(100))),
        # even an outcome that did not hold: sales was working the lead
        ([outcome("rejected", 5, "refused")], LATE, Labelled(False, day(5), day(95))),
        # an outcome later than the cut-off leaves it where it is
        ([outcome("accepted", 31), outcome("won", 60)], LATE, Labelled(True, day(30), day(60))),
    ],
)
def test_the_cut_off_moves_to_the_first_sales_outcome(
    outcomes: list[SalesOutcome], now: datetime, expected: Labelled
) -> None:
    found = label(first_seen=FIRST_SEEN, mql_at=None, outcomes=outcomes, policy=DEFAULT, now=now)

    assert found == expected


@pytest.mark.parametrize(
    "outcomes",
    [
        [outcome("won", -1)],  # reported before the lead's first message
        [outcome("accepted", 0), outcome("won", 20)],  # at its first message
    ],
)
def test_an_outcome_at_or_before_the_first_message_leaves_nothing_to_learn_from(
    outcomes: list[SalesOutcome],
) -> None:
    found = label(first_seen=FIRST_SEEN, mql_at=None, outcomes=outcomes, policy=DEFAULT, now=LATE)

    assert found == Unlabelled("nothing before the cut-off")


MQL = OutcomePolicy(cutoff="mql")


@pytest.mark.parametrize(
    ("mql_at", "outcomes", "expected"),
    [
        (None, [outcome("won", 60)], Unlabelled("never an mql")),
        (day(5), [outcome("won", 60)], Labelled(True, day(5), day(60))),
        (day(5), [outcome("won", 100)], Labelled(False, day(5), day(95))),  # horizon: day 95
        (day(45), [outcome("lost", 80)], Labelled(False, day(45), day(80))),  # past day 30
        (day(5), [outcome("accepted", 3)], Labelled(False, day(3), day(93))),  # sales came first
        (day(0), [], Unlabelled("nothing before the cut-off")),
    ],
)
def test_under_the_mql_policy_the_cut_off_is_when_the_lead_became_an_mql(
    mql_at: datetime | None, outcomes: list[SalesOutcome], expected: Labelled | Unlabelled
) -> None:
    found = label(first_seen=FIRST_SEEN, mql_at=mql_at, outcomes=outcomes, policy=MQL, now=LATE)

    assert found == expected


@pytest.mark.parametrize(
    ("policy", "outcomes", "expected"),
    [
        # qualified counts as converted
        (
            OutcomePolicy(positive=("won", "qualified")),
            [outcome("qualified", 40)],
            Labelled(True, day(30), day(40)),
        ),
        # rejected by sales counts as not converted
        (
            OutcomePolicy(negative=("lost", "disqualified", "rejected")),
            [outcome("rejected", 40)],
            Labelled(False, day(30), day(40)),
        ),
        # disqualified no longer decides: the lead is open until its horizon
        (OutcomePolicy(negative=("lost",)), [outcome("disqualified", 40)], Unlabelled("still open")),
        # a shorter horizon and cut-off
        (
            OutcomePolicy(cutoff_days=7, horizon_days=30),
            [outcome("won", 40)],
            Labelled(False, day(7), day(37)),
        ),
        (
            OutcomePolicy(cutoff_days=7, horizon_days=30),
            [outcome("won", 37)],
            Labelled(True, day(7), day(37)),
        ),
    ],
)
def test_what_counts_as_converted_is_configurable(
    policy: OutcomePolicy, outcomes: list[SalesOutcome], expected: Labelled | Unlabelled
) -> None:
    found = label(first_seen=FIRST_SEEN, mql_at=None, outcomes=outcomes, policy=policy, now=day(100))

    assert found == expected


def test_a_policy_refuses_a_horizon_or_cut_off_of_no_length() -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        OutcomePolicy(horizon_days=0)
    with pytest.raises(ValueError, match="cutoff_days"):
        OutcomePolicy(cutoff_days=-1)
