"""What a lead's CRM outcomes teach (`outcomes.label`): converted or not, as of a cut-off that
comes before everything the label is made of."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

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


def case(outcomes: list[SalesOutcome], now: datetime, expected: object, name: str) -> Any:
    """A row of a label table, named for what it is about."""
    return pytest.param(outcomes, now, expected, id=name)


@pytest.mark.parametrize(
    ("outcomes", "now", "expected"),
    [
        # won within the horizon: positive, known when it was won
        case([outcome("won", 60)], LATE, Labelled(True, day(30), day(60)), "won"),
        case([outcome("lost", 50)], LATE, Labelled(False, day(30), day(50)), "lost"),
        case(
            [outcome("disqualified", 45)], LATE, Labelled(False, day(30), day(45)), "disqualified"
        ),
        # no outcome and the horizon over: negative, known at its end
        case([], LATE, Labelled(False, day(30), day(120)), "horizon-over"),
        case([], day(119), Unlabelled("still open"), "horizon-not-over"),
        # labelled only once the horizon is over, whatever came: among the newest leads the
        # quick outcomes are known and the slow ones not yet
        case([outcome("won", 60)], day(119), Unlabelled("still open"), "won-horizon-not-over"),
        case([outcome("lost", 50)], day(100), Unlabelled("still open"), "lost-horizon-not-over"),
        case([], day(120), Labelled(False, day(30), day(120)), "horizon-just-over"),
        case([outcome("won", 120)], LATE, Labelled(True, day(30), day(120)), "won-on-its-last-day"),
        case([outcome("won", 130)], LATE, Labelled(False, day(30), day(120)), "won-too-late"),
        case(
            [outcome("won", 130)], day(125), Labelled(False, day(30), day(120)), "not-won-in-time"
        ),
        # lost, then won back within the horizon: positive, and contradicting
        case(
            [outcome("lost", 40), outcome("won", 80)],
            LATE,
            Labelled(True, day(30), day(80), True),
            "lost-then-won",
        ),
        # a customer reported lost: the lifecycle refused it, it changes nothing (but is noted)
        case(
            [outcome("won", 60), outcome("lost", 70, "refused")],
            LATE,
            Labelled(True, day(30), day(60), True),
            "won-then-a-refused-lost",
        ),
        # outcomes that do not hold count for nothing
        case(
            [outcome("won", 60, "superseded")],
            LATE,
            Labelled(False, day(30), day(120)),
            "a-superseded-won",
        ),
        case(
            [outcome("won", 60, "refused")],
            LATE,
            Labelled(False, day(30), day(120)),
            "a-refused-won",
        ),
        case(
            [outcome("lost", 50, "refused")],
            LATE,
            Labelled(False, day(30), day(120)),
            "a-refused-lost",
        ),
        case(
            [outcome("won", 60, "unchanged")],
            LATE,
            Labelled(True, day(30), day(60)),
            "a-won-confirming-the-stage",
        ),
        # neither a conversion nor its contrary: negative once the horizon is over
        case([outcome("qualified", 50)], LATE, Labelled(False, day(30), day(120)), "qualified"),
        case([outcome("rejected", 50)], LATE, Labelled(False, day(30), day(120)), "rejected"),
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
        ([outcome("accepted", 10), outcome("won", 60)], day(99), Unlabelled("still open")),
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
        # the message that made it an MQL is its own: features include it (`inclusive`)
        (day(5), [outcome("won", 60)], Labelled(True, day(5), day(60), inclusive=True)),
        (day(5), [outcome("won", 100)], Labelled(False, day(5), day(95), inclusive=True)),
        (day(45), [outcome("lost", 80)], Labelled(False, day(45), day(80), inclusive=True)),
        (day(5), [outcome("accepted", 3)], Labelled(False, day(3), day(93))),  # sales came first
        # its first message made it an MQL: that message is what there is to learn from
        (day(0), [], Labelled(False, day(0), day(90), inclusive=True)),
        (day(0), [outcome("accepted", 0)], Labelled(False, day(0), day(90), inclusive=True)),
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
        # disqualified no longer decides: not converted, known at the horizon's end
        (
            OutcomePolicy(negative=("lost",)),
            [outcome("disqualified", 40)],
            Labelled(False, day(30), day(120)),
        ),
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
    found = label(first_seen=FIRST_SEEN, mql_at=None, outcomes=outcomes, policy=policy, now=LATE)

    assert found == expected


def test_a_policy_refuses_a_horizon_or_cut_off_of_no_length() -> None:
    with pytest.raises(ValueError, match="horizon_days"):
        OutcomePolicy(horizon_days=0)
    with pytest.raises(ValueError, match="cutoff_days"):
        OutcomePolicy(cutoff_days=-1)
