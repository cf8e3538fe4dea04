"""A row to a lead: trimming, email, names, phone, country, formula safety, rejections, values
dropped with a warning; and the identify call a lead becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.ingest.lead_import.events import identify_event
from services.ingest.lead_import.rows import Lead, RowRejected, formula_safe, normalise_row
from services.ingest.wire import encode_fields
from shared.codec import decode
from shared.contracts import RawEvent

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


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
        ({"email": ["a@b.io"]}, "email must be text, not list"),  # NDJSON
        # A bad email is not saved by good optional values.
        ({"email": "bob@", "phone": "+44 20 7183 8750", "country": "UK"}, "invalid email 'bob@'"),
        # A userId is an identity: it must match verbatim, so it cannot be dropped or repaired.
        ({"email": "a@b.io", "userId": "=1+1"}, "invalid userId '=1+1'"),
        ({"email": "a@b.io", "userId": "u" * 201}, "userId longer than 200"),
        ({"email": "a@b.io", "userId": {"id": 7}}, "userId must be text, not dict"),
    ],
)
def test_rows_that_identify_no_one_are_rejected_with_a_reason(
    values: dict[str, Any], reason: str
) -> None:
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


@pytest.mark.parametrize(
    ("values", "kept", "warnings"),
    [
        # A phone that is no number loses the phone, not the lead.
        (
            {"phone": "555", "country": "US"},
            {"country": "US"},
            ["phone '555' dropped: not a valid number"],
        ),
        (
            {"phone": "12", "country": "DE"},
            {"country": "DE"},
            ["phone '12' dropped: not a valid number"],
        ),
        # A national number with no country to read it by.
        (
            {"phone": "020 7183 8750"},
            {},
            ["phone '020 7183 8750' dropped: no country code and no country to assume"],
        ),
        # An unknown country loses the country; an international phone stays.
        (
            {"country": "Atlantis", "phone": "+44 20 7183 8750"},
            {"phone": "+442071838750"},
            ["country 'Atlantis' dropped: not a known country name or ISO code"],
        ),
        # A dropped country is no region: a national phone is then read without one.
        (
            {"country": "Atlantis", "phone": "020 7183 8750"},
            {},
            [
                "country 'Atlantis' dropped: not a known country name or ISO code",
                "phone '020 7183 8750' dropped: no country code and no country to assume",
            ],
        ),
        # NDJSON: an object where text belongs (the value is not quoted: it may be large).
        (
            {"company": {"name": "Bobco"}, "title": "CTO"},
            {"title": "CTO"},
            ["company dropped: must be text, not dict"],
        ),
        ({"country": True}, {}, ["country dropped: must be text, not bool"]),
        # A long bad value is quoted shortened, as rejections quote it.
        (
            {"country": "X" * 80},
            {},
            [f"country '{'X' * 59}…' dropped: not a known country name or ISO code"],
        ),
    ],
)
def test_a_bad_optional_value_is_dropped_with_a_warning_and_the_lead_kept(
    values: dict[str, Any], kept: dict[str, Any], warnings: list[str]
) -> None:
    lead = normalise_row({"email": "Ann@X.io", "name": "Ann Lee", **values}, {"Source": "fair"})

    assert lead.email == "ann@x.io"
    assert lead.traits == {
        "Source": "fair",
        "email": "ann@x.io",
        "firstName": "Ann",
        "lastName": "Lee",
        "name": "Ann Lee",
        **kept,
    }
    assert list(lead.warnings) == warnings


def test_a_row_with_only_good_values_has_no_warnings() -> None:
    lead = normalise_row({"email": "a@b.io", "phone": "020 7183 8750", "country": "UK"}, {})
    assert (lead.traits["phone"], lead.warnings) == ("+442071838750", ())


# ---- the identify call -----------------------------------------------------------------------


def identify_fields(lead: Lead) -> dict[str, Any]:
    return identify_event(
        lead,
        first_row=2,
        list_name="webinar-q4",
        import_id="imp-1",
        source="partner-key",
        received_at=NOW,
    )


def test_without_a_user_id_column_the_lead_is_identified_by_its_email_alone() -> None:
    fields = identify_fields(normalise_row({"email": " Ann@X.io ", "phone": "555"}, {}))

    event = RawEvent.model_validate(fields)
    assert (event.type, event.user_id, event.anonymous_id) == ("identify", None, None)
    assert event.traits == {"email": "ann@x.io"}
    assert event.partition_key == "ann@x.io"
    record = encode_fields(fields)
    assert record.key == b"ann@x.io"
    assert decode(record.value, RawEvent) == event


def test_a_user_id_column_gives_the_event_its_user_id_and_key() -> None:
    fields = identify_fields(normalise_row({"email": "ann@x.io", "userId": "crm-17"}, {}))

    event = RawEvent.model_validate(fields)
    assert (event.user_id, event.partition_key) == ("crm-17", "crm-17")
    assert encode_fields(fields).key == b"crm-17"


IMPORTED = {"import": {"id": "imp-1", "list": "webinar-q4", "row": 2}}
EMAIL = {"email": "ann@x.io"}


@pytest.mark.parametrize(
    "call",
    [
        # A website identify: its email is a trait it claims, not an id to key on.
        {"type": "identify", "traits": EMAIL},
        {"type": "identify", "traits": EMAIL, "context": {"import": "yes"}},
        # Only an identify call can be an imported lead.
        {"type": "track", "event": "Demo Requested", "traits": EMAIL, "context": IMPORTED},
        {"type": "page", "traits": EMAIL, "context": IMPORTED},
        # An imported lead without a usable email names no one.
        {"type": "identify", "traits": {}, "context": IMPORTED},
        {"type": "identify", "traits": {"email": "  "}, "context": IMPORTED},
        {"type": "identify", "traits": {"email": ["ann@x.io"]}, "context": IMPORTED},
        {"type": "identify", "userId": "", "anonymousId": "", "context": IMPORTED},
    ],
)
def test_a_call_without_user_id_or_anonymous_id_is_refused_unless_an_imported_lead(
    call: dict[str, Any],
) -> None:
    stamped = {"messageId": "m-1", "source": "website", "receivedAt": NOW, "timestamp": NOW}
    with pytest.raises(ValidationError, match="a call needs userId or anonymousId"):
        RawEvent.model_validate({**stamped, **call})
