"""A row to a lead: trimming, email, names, phone, country, formula safety, rejections."""

from __future__ import annotations

import pytest

from services.ingest.lead_import.rows import Lead, RowRejected, formula_safe, normalise_row


def test_a_messy_row_is_reformatted() -> None:
    lead = normalise_row(
        {
            "email": "  Ada.Lovelace@Example.COM ",
            "name": " Dr.  Ada   Lovelace ",
            "company": "  Analytical   Engines Ltd ",
            "title": " VP  Engineering",
            "phone": "020 7183 8750",
            "country": "United Kingdom",
            "website": " https://example.com ",
        },
        {"Lead Source": "  Webinar ", "Empty": "   "},
    )
    assert lead == Lead(
        email="ada.lovelace@example.com",
        user_id=None,
        traits={
            "Lead Source": "Webinar",
            "email": "ada.lovelace@example.com",
            "country": "GB",
            "phone": "+442071838750",  # region from the row's country
            "firstName": "Ada",
            "lastName": "Lovelace",
            "name": "Dr. Ada Lovelace",
            "company": "Analytical Engines Ltd",
            "title": "VP Engineering",
            "website": "https://example.com",
        },
    )


def test_given_first_and_last_names_are_not_overwritten_by_the_full_name() -> None:
    lead = normalise_row(
        {"email": "a@b.io", "firstName": "Grace", "lastName": "Hopper", "name": "G. Hopper"}, {}
    )
    assert (lead.traits["firstName"], lead.traits["lastName"]) == ("Grace", "Hopper")


def test_a_user_id_column_is_kept_as_the_id() -> None:
    assert normalise_row({"email": "a@b.io", "userId": " u-17 "}, {}).user_id == "u-17"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"email": "  "}, "missing email"),
        ({}, "missing email"),
        ({"email": "bob@"}, "invalid email 'bob@'"),
        ({"email": "not an email"}, "invalid email 'not an email'"),
        ({"email": "=cmd|' /C calc'!A0@x.io"}, "starts like a spreadsheet formula"),
        ({"email": "a@b.io", "country": "Atlantis"}, "invalid country 'Atlantis'"),
        ({"email": "a@b.io", "phone": "12"}, "invalid phone '12'"),
        ({"email": "a@b.io", "phone": "020 7183 8750"}, "no country code and no country"),
        ({"email": "a@b.io", "userId": "=1+1"}, "invalid userId '=1+1'"),
        ({"email": "a@b.io", "userId": "u" * 201}, "userId longer than 200"),
    ],
)
def test_invalid_rows_are_rejected_with_a_reason(values: dict[str, str], reason: str) -> None:
    with pytest.raises(RowRejected) as rejected:
        normalise_row(values, {})
    assert reason in str(rejected.value)


@pytest.mark.parametrize(
    ("cell", "stored"),
    [
        ('=HYPERLINK("http://evil","x")', '\'=HYPERLINK("http://evil","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("-5", "-5"),  # a plain number is read as that number, not evaluated
        ("+3.25", "+3.25"),
        ("Acme", "Acme"),
        ("a=b", "a=b"),
    ],
)
def test_formula_cells_are_stored_as_text(cell: str, stored: str) -> None:
    assert formula_safe(cell) == stored
    lead = normalise_row({"email": "a@b.io", "company": cell, "title": cell}, {"Note": cell})
    assert lead.traits["company"] == lead.traits["title"] == lead.traits["Note"] == stored


def test_leading_whitespace_does_not_hide_a_formula() -> None:
    lead = normalise_row({"email": "a@b.io", "company": "\t =1+1"}, {"Note": "\r=2"})
    assert lead.traits["company"] == "'=1+1"
    assert lead.traits["Note"] == "'=2"


def test_a_normalised_phone_is_not_mistaken_for_a_formula() -> None:
    lead = normalise_row({"email": "a@b.io", "phone": "+44 20 7183 8750"}, {})
    assert lead.traits["phone"] == "+442071838750"


def test_ndjson_extras_keep_numbers_and_make_nested_text_safe() -> None:
    lead = normalise_row(
        {"email": "a@b.io"},
        {"employees": 250, "vip": True, "address": {"city": " Paris ", "note": "=1"}, "tags": []},
    )
    assert lead.traits["employees"] == 250
    assert lead.traits["vip"] is True
    assert lead.traits["address"] == {"city": "Paris", "note": "'=1"}
