"""A page's filters from its query string (`services.console.web.filters`): a period of ISO
days, inclusive, by default the last 90 days to today; exact values; anything bad is a
`BadFilter` naming its parameter (a 400), never a 500."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.console.queries import DIMENSIONS, CohortFilter, whole_months
from services.console.web.filters import (
    DEFAULT_DAYS,
    MAX_DAYS,
    MAX_VALUE,
    BadFilter,
    cohort_of,
    period_of,
    value_of,
)

TODAY = date(2026, 3, 2)


def days(since: date, until: date) -> int:
    """How many days an inclusive period holds."""
    return (until - since).days + 1


@pytest.mark.parametrize(
    ("query", "period"),
    [
        ({}, (date(2025, 12, 3), TODAY)),  # the last 90 days, today included
        ({"since": "", "until": "  "}, (date(2025, 12, 3), TODAY)),  # empty: the default
        ({"until": "2026-01-31"}, (date(2025, 11, 3), date(2026, 1, 31))),  # 90 days to it
        ({"since": "2026-01-01"}, (date(2026, 1, 1), TODAY)),  # to today
        ({"since": "2026-02-01", "until": "2026-02-28"}, (date(2026, 2, 1), date(2026, 2, 28))),
        ({"since": "2026-02-10", "until": "2026-02-10"}, (date(2026, 2, 10), date(2026, 2, 10))),
        ({"since": " 2026-02-01 ", "until": "2026-02-03\n"}, (date(2026, 2, 1), date(2026, 2, 3))),
        ({"since": "2030-01-01", "until": "2030-01-02"}, (date(2030, 1, 1), date(2030, 1, 2))),
    ],
)
def test_the_period_of_a_query(query: dict[str, str], period: tuple[date, date]) -> None:
    assert period_of(query, today=TODAY) == period


def test_the_default_period_is_90_days_including_today() -> None:
    since, until = period_of({}, today=TODAY)

    assert until == TODAY
    assert days(since, until) == DEFAULT_DAYS == 90


def test_without_a_today_the_period_ends_on_the_clocks_day() -> None:
    since, until = period_of({})

    assert days(since, until) == DEFAULT_DAYS
    assert abs((until - date.today()).days) <= 1  # UTC, the test machine's zone may differ


def test_the_longest_period_is_accepted_and_one_day_more_is_not() -> None:
    until = date(2026, 3, 2)
    longest = until - timedelta(days=MAX_DAYS - 1)

    assert days(*period_of({"since": longest.isoformat(), "until": until.isoformat()})) == MAX_DAYS
    with pytest.raises(BadFilter, match=f"^since: a period is at most {MAX_DAYS} days"):
        period_of({"since": (longest - timedelta(days=1)).isoformat(), "until": until.isoformat()})


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"since": "2026-13-01"}, "since"),  # no month 13
        ({"since": "2026-02-30"}, "since"),  # no such day
        ({"until": "yesterday"}, "until"),
        ({"until": "03/02/2026"}, "until"),
        ({"since": "2026-03-01T10:00"}, "since"),  # a day, not a time
        ({"since": "x" * 5000}, "since"),  # long nonsense is refused, not echoed whole
        ({"since": "2026-03-02", "until": "2026-03-01"}, "since"),  # starts after it ends
        ({"since": "2026-03-03"}, "since"),  # after today, the default end
        ({"until": "2025-01-01", "since": "2019-01-01"}, "since"),  # too long a period
        ({"source": "s" * (MAX_VALUE + 1)}, "source"),  # a value over 200 characters
        ({"grade": "A" * 1000}, "grade"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_parameter(query: dict[str, str], named: str) -> None:
    with pytest.raises(BadFilter) as refused:
        cohort_of(query, today=TODAY)

    message = str(refused.value)
    assert message.startswith(f"{named}: ")
    assert len(message) < 120  # a sentence for the page, not the whole value


def test_a_bad_filter_is_a_value_error() -> None:
    # The app answers ValueErrors of filters with a 400.
    assert issubclass(BadFilter, ValueError)


@pytest.mark.parametrize(
    ("query", "value"),
    [
        ({}, None),  # absent: any value
        ({"source": ""}, None),
        ({"source": "   "}, None),
        ({"source": " website "}, "website"),
        ({"source": "s" * MAX_VALUE}, "s" * MAX_VALUE),  # 200 characters are fine
        ({"source": "  " + "s" * MAX_VALUE + "  "}, "s" * MAX_VALUE),  # counted once stripped
    ],
)
def test_a_value_filter(query: dict[str, str], value: str | None) -> None:
    assert value_of(query, "source") == value


def test_a_cohort_by_default_is_every_lead_of_the_last_90_days() -> None:
    assert cohort_of({}, today=TODAY) == CohortFilter(since=date(2025, 12, 3), until=TODAY)


def test_a_cohort_takes_every_dimension_and_ignores_other_parameters() -> None:
    query = {
        "since": "2026-02-01",
        "until": "2026-02-28",
        "source": "website",
        "import_list": "fair 2026",
        "campaign": "spring",
        "country": "ES",
        "grade": "A",
        "page": "2",  # not a filter
    }

    cohort = cohort_of(query, today=TODAY)

    assert cohort == CohortFilter(
        since=date(2026, 2, 1),
        until=date(2026, 2, 28),
        source="website",
        import_list="fair 2026",
        campaign="spring",
        country="ES",
        grade="A",
    )
    assert cohort.dimension_args() == [query[name] for name in DIMENSIONS]


@pytest.mark.parametrize(
    ("since", "until", "months"),
    [
        # inside one month: no whole month
        (date(2026, 11, 3), date(2026, 11, 20), None),
        # the first to the last day of a month: that month
        (date(2026, 11, 1), date(2026, 11, 30), (date(2026, 11, 1), date(2026, 12, 1))),
        # from mid-October to early December: November alone
        (date(2026, 10, 20), date(2026, 12, 5), (date(2026, 11, 1), date(2026, 12, 1))),
        # a year from mid-month: the eleven whole months between, across a new year
        (date(2025, 12, 4), date(2026, 12, 3), (date(2026, 1, 1), date(2026, 12, 1))),
    ],
)
def test_the_whole_months_of_a_period(
    since: date, until: date, months: tuple[date, date] | None
) -> None:
    first, end = whole_months(since, until)
    if months is None:
        assert first == end
    else:
        assert (first, end) == months
