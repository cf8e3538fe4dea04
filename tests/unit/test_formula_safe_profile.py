"""Formula-looking free text is defused the same way whichever path it takes: a lead-list cell
(ingest) or an identify call's trait (enrich's profile), by `shared.normalize.formula_safe`."""

from __future__ import annotations

import pytest

from services.enrich.profile import profile_after
from services.ingest.lead_import.rows import normalise_row
from shared.contracts import LeadProfile
from shared.normalize import formula_safe

pytestmark = pytest.mark.unit

HYPERLINK = '=HYPERLINK("http://x","y")'


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        ("+1+1", "'+1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-cmd", "'-cmd"),
        ("\tx", "'\tx"),
        ("-5", "-5"),  # a plain signed number stays a number
        ("'=already safe", "'=already safe"),  # idempotent
        ("Ada", "Ada"),
    ],
)
def test_the_normaliser_defuses_formulas(value: str, stored: str) -> None:
    assert formula_safe(value) == stored
    assert formula_safe(formula_safe(value)) == stored


def test_an_identify_with_a_formula_first_name_yields_a_safe_profile() -> None:
    after = profile_after(
        LeadProfile(),
        {
            "firstName": HYPERLINK,
            "lastName": "=1+1",
            "title": "@CTO",
            "company": "+Acme",
            "email": "ada@initech.com",
        },
    )
    assert (after.first_name, after.last_name, after.title, after.company) == (
        "'" + HYPERLINK,
        "'=1+1",
        "'@CTO",
        "'+Acme",
    )


def test_a_split_full_name_is_defused_in_each_part() -> None:
    after = profile_after(LeadProfile(), {"name": "Lovelace, =cmd"})
    assert (after.first_name, after.last_name) == ("'=cmd", "Lovelace")


def test_an_imported_and_an_identified_name_agree() -> None:
    imported = normalise_row({"email": "ada@initech.com", "firstName": HYPERLINK}, {})
    identified = profile_after(LeadProfile(), imported.traits)
    assert imported.traits["firstName"] == identified.first_name == "'" + HYPERLINK
