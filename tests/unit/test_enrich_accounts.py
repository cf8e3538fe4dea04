"""Lead-to-account matching with a table of tricky company names (services/enrich/accounts.py)."""

from __future__ import annotations

import pytest

from services.enrich.accounts import Account, AccountIndex, company_key

pytestmark = pytest.mark.unit

ACCOUNTS = [
    Account("acct-acme", "Acme Robotics, Inc.", "customer", "acme-robotics.com", "rep-grace"),
    Account("acct-globex", "Globex Corporation", "target", "globex.com", "rep-alan"),
    Account("acct-umbrella", "Umbrella Health Ltd", "target", None, "rep-kat"),
    Account("acct-kraemer", "Krämer Maschinenbau GmbH", "customer", None, "rep-linus"),
    Account("acct-socgen", "Société Générale S.A.", "target", None),
    Account("acct-att", "AT&T Inc.", "target", None),
    Account("acct-apple", "Apple", "target", "apple.com"),
    # Two accounts for one company (a CRM duplicate): the customer wins, then the smaller id.
    Account("acct-hooli-2", "Hooli", "target", "hooli.io"),
    Account("acct-hooli-1", "Hooli Inc", "customer", "hooli.io"),
]
INDEX = AccountIndex(ACCOUNTS, fuzzy_threshold=90)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("The Acme Robotics, Inc.", "acme robotics"),
        ("ACME ROBOTICS LLC", "acme robotics"),
        ("Krämer Maschinenbau GmbH", "kramer maschinenbau"),
        ("Société Générale S.A.", "societe generale"),
        ("AT&T Inc.", "at and t"),
        ("Globex Corporation", "globex"),
        ("Northwind Logistics S.L.", "northwind logistics"),
        ("Vandelay Industries Pty Ltd", "vandelay industries"),
        ("The Co", "co"),
        ("The", "the"),
    ],
)
def test_company_key(name: str, key: str) -> None:
    assert company_key(name) == key


@pytest.mark.parametrize(
    ("email_domain", "website", "company", "account", "confidence", "method"),
    [
        ("acme-robotics.com", None, None, "acct-acme", "strong", "email_domain"),
        ("eu.acme-robotics.com", None, None, "acct-acme", "strong", "email_domain"),
        (None, "globex.com", "Something Else", "acct-globex", "strong", "website_domain"),
        ("globex.com", None, "Acme Robotics", "acct-globex", "strong", "email_domain"),
        (None, None, "acme robotics", "acct-acme", "strong", "company_name"),
        (None, None, "The Acme Robotics Corp.", "acct-acme", "strong", "company_name"),
        (None, None, "Umbrella Health", "acct-umbrella", "strong", "company_name"),
        (None, None, "Umbrela Health", "acct-umbrella", "weak", "company_name"),
        (None, None, "Kraemer Maschinenbau", "acct-kraemer", "weak", "company_name"),
        (None, None, "Societe Generale", "acct-socgen", "strong", "company_name"),
        (None, None, "AT and T", "acct-att", "strong", "company_name"),
        ("hooli.io", None, None, "acct-hooli-1", "strong", "email_domain"),
        (None, None, "Applied Materials", None, None, None),
        (None, None, "Apple Pie Bakery", None, None, None),
        (None, None, "Globex Energy Trading", None, None, None),
        (None, None, "", None, None, None),
        ("unknown-company.io", None, None, None, None, None),
    ],
)
def test_match(
    email_domain: str | None,
    website: str | None,
    company: str | None,
    account: str | None,
    confidence: str | None,
    method: str | None,
) -> None:
    match = INDEX.match(email_domain=email_domain, website_domain=website, company=company)

    if account is None:
        assert match is None
        return
    assert match is not None
    assert (match.account_id, match.confidence, match.method) == (account, confidence, method)
    assert match.evidence  # says why, for the rep and for an audit


def test_owner_travels_with_the_match() -> None:
    match = INDEX.match(email_domain="acme-robotics.com", website_domain=None, company=None)

    assert match is not None
    assert (match.owner_id, match.type) == ("rep-grace", "customer")


def test_ties_are_broken_the_same_way_whatever_the_load_order() -> None:
    reversed_index = AccountIndex(list(reversed(ACCOUNTS)), fuzzy_threshold=90)

    for index in (INDEX, reversed_index):
        match = index.match(email_domain="hooli.io", website_domain=None, company=None)
        assert match is not None
        assert match.account_id == "acct-hooli-1"
