"""Which column holds which trait: guesses from common headers, given mappings, refusals."""

from __future__ import annotations

import pytest

from services.ingest.lead_import.columns import (
    MAX_COLUMNS,
    ColumnProblem,
    NoEmailColumn,
    guess_field,
    plan_columns,
)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("EMAIL", "email"),
        ("Work Email", "email"),
        ("First Name", "firstName"),
        ("first_name", "firstName"),
        ("Last Name", "lastName"),
        ("Surname", "lastName"),
        ("Full Name", "name"),
        ("Name", "name"),
        ("Company", "company"),
        ("Organization", "company"),
        ("Organisation", "company"),
        ("Job Title", "title"),
        ("Title", "title"),
        ("Phone", "phone"),
        ("Mobile", "phone"),
        ("Phone Number", "phone"),
        ("Country", "country"),
        ("Website", "website"),
        ("User ID", "userId"),
        ("Favourite colour", None),
        ("", None),
    ],
)
def test_common_headers_are_recognised(header: str, field: str | None) -> None:
    assert guess_field(header) == field


def test_unknown_columns_become_extra_traits_and_known_ones_fields() -> None:
    plan = plan_columns(["E-mail", "Company", "Lead Source", "Budget"])
    assert dict(plan.fields) == {0: "email", 1: "company"}
    assert dict(plan.extras) == {2: "Lead Source", 3: "Budget"}
    assert plan.ignored == ()


def test_a_second_column_for_the_same_field_is_ignored_and_reported() -> None:
    plan = plan_columns(["Email", "E-mail", "", "Notes", "Notes"])
    assert dict(plan.fields) == {0: "email"}
    assert dict(plan.extras) == {3: "Notes"}
    assert plan.ignored == (
        "'E-mail': email already comes from 'Email'",
        "column 3: no header",
        "'Notes': a column with the same header comes earlier",
    )


def test_a_given_mapping_wins_over_guesses_and_can_ignore_a_column() -> None:
    plan = plan_columns(
        ["Mail", "Email", "Secret"], mapping={"Mail": "email", "Email": None, "Secret": None}
    )
    assert dict(plan.fields) == {0: "email"}
    assert dict(plan.extras) == {}
    assert plan.ignored == ("'Email': mapped to nothing", "'Secret': mapped to nothing")
    assert plan.described() == {"Mail": "email"}


@pytest.mark.parametrize(
    ("headers", "mapping", "reason"),
    [
        (["Name", "Company"], None, "no email column among the headers ('Name', 'Company')"),
        (["Email"], {"Mail": "email"}, "mapping names 'Mail', which is not a header"),
        (["Email", "X"], {"X": "shoeSize"}, "mapping puts 'X' into 'shoeSize'; fields are:"),
        (["A", "B"], {"A": "email", "B": "email"}, "mapping puts both 'A' and 'B' into 'email'"),
        (["Email"] * (MAX_COLUMNS + 1), None, f"at most {MAX_COLUMNS} are accepted"),
    ],
)
def test_unusable_columns_are_refused_with_the_reason(
    headers: list[str], mapping: dict[str, str | None] | None, reason: str
) -> None:
    with pytest.raises(ColumnProblem) as refused:
        plan_columns(headers, mapping=mapping)
    assert reason in str(refused.value)


def test_no_email_column_is_its_own_kind_of_problem() -> None:
    with pytest.raises(NoEmailColumn):
        plan_columns(["Phone"])
