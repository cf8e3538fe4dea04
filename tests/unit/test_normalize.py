"""The shared normalisers: canonical forms and reasons people can act on."""

import pytest

from shared.normalize import (
    InvalidValue,
    country,
    domain_of_email,
    domain_of_website,
    email,
    phone,
    split_name,
    text,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("bob@acme.io", "bob@acme.io"),
        ("  Bob.Smith@ACME.io ", "bob.smith@acme.io"),
        ("<ada@example.org>", "ada@example.org"),
        ("first+tag@sub.example.co.uk", "first+tag@sub.example.co.uk"),
    ],
)
def test_email_is_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("bob@", "invalid email 'bob@': There must be something after the @-sign"),
        ("", "invalid email '': empty"),
        ("   ", "invalid email '   ': empty"),
        ("no-at-sign", "invalid email 'no-at-sign': An email address must have an @-sign"),
        ("a b@c.com", "invalid email 'a b@c.com'"),
        ("x@" + "a" * 260 + ".com", "longer than 254 characters"),
    ],
)
def test_invalid_email_names_value_and_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        email(raw)
    assert reason in str(caught.value)
    assert caught.value.kind == "email"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+44 20 7183 8750", None, "+442071838750"),
        ("020 7183 8750", "GB", "+442071838750"),
        ("020 7183 8750", "gb", "+442071838750"),
        ("0044 20 7183 8750", None, "+442071838750"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+49 30 901820", "US", "+4930901820"),  # an explicit prefix wins over the region
    ],
)
def test_phone_becomes_e164(raw: str, region: str | None, expected: str) -> None:
    assert phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("020 7183 8750", None, "no country code and no country to assume"),
        ("12", "GB", "invalid phone '12'"),
        ("+44 12", None, "not a valid number"),
        ("call me", "GB", "invalid phone 'call me'"),
        ("", "GB", "empty"),
    ],
)
def test_invalid_phone_is_refused_with_reason(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        phone(raw, region)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("Germany", "DE"),
        ("  germany ", "DE"),
        ("Deutschland", "DE"),
        ("UK", "GB"),
        ("United Kingdom", "GB"),
        ("USA", "US"),
        ("United States", "US"),
        ("The Netherlands", "NL"),
        ("France", "FR"),
    ],
)
def test_country_becomes_iso_alpha2(raw: str, expected: str) -> None:
    assert country(raw) == expected


@pytest.mark.parametrize("raw", ["Narnia", "", "XX1"])
def test_unknown_country_is_refused(raw: str) -> None:
    with pytest.raises(InvalidValue, match="country"):
        country(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada Lovelace", ("Ada", "Lovelace")),
        ("  Ada   Lovelace ", ("Ada", "Lovelace")),
        ("Lovelace, Ada", ("Ada", "Lovelace")),
        ("Dr. Jean-Luc de la Tour Jr.", ("Jean-Luc", "de la Tour")),
        ("Ludwig van Beethoven", ("Ludwig", "van Beethoven")),
        ("Madonna", ("Madonna", None)),
        ("Mr.", ("Mr.", None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_split_name(raw: str | None, expected: tuple[str | None, str | None]) -> None:
    assert split_name(raw) == expected


def test_text_trims_and_collapses() -> None:
    assert text("  Acme \t Corp\n") == "Acme Corp"
    assert text("   ") is None
    assert text(None) is None


def test_domains() -> None:
    assert domain_of_email("bob@acme.io") == "acme.io"
    assert domain_of_website("https://www.Acme.io/about?x=1") == "acme.io"
    assert domain_of_website("acme.io") == "acme.io"
    assert domain_of_website("localhost") is None
    assert domain_of_website("") is None
    with pytest.raises(InvalidValue):
        domain_of_email("nobody")
