"""Identity resolution and trait normalisation (services/enrich/domain.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from services.enrich.domain import (
    Identity,
    IdentityKind,
    company_domain,
    identities_of,
    is_identified,
    merge_profile,
    normalise_email,
    opts_out,
    resolve_lead,
)
from shared.contracts import LeadProfile
from tests.unit.builders import identify, profile, raw_event

pytestmark = pytest.mark.unit

USER = IdentityKind.USER_ID
EMAIL = IdentityKind.EMAIL
ANON = IdentityKind.ANONYMOUS_ID


def fresh() -> Callable[[], str]:
    """A `new_lead_id` that counts the leads it made: new-lead-1, new-lead-2, ..."""
    counter = itertools.count(1)
    return lambda: f"new-lead-{next(counter)}"


# ---- normalise_email --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("maria.gonzalez@northwind-logistics.com", "maria.gonzalez@northwind-logistics.com"),
        ("Maria.Gonzalez@Northwind-Logistics.COM", "maria.gonzalez@northwind-logistics.com"),
        ("  d.okafor@fernhill-analytics.com\n", "d.okafor@fernhill-analytics.com"),
        ("priya.raman+leads@brightwave.co.uk", "priya.raman+leads@brightwave.co.uk"),
        ("o'brien@dublin-freight.ie", "o'brien@dublin-freight.ie"),
        ("jonas.weber@gmail.com", "jonas.weber@gmail.com"),
        ("test@lumenboard.io", "test@lumenboard.io"),  # a real mailbox at a real company
        ("maria@example.com", "maria@example.com"),
        ("test@test.com", None),
        ("TEST@Test.com", None),
        ("noreply@example.com", None),
        ("null@example.org", None),
        ("not an email", None),
        ("maria.gonzalez@", None),
        ("@northwind-logistics.com", None),
        ("maria@localhost", None),
        ("maria gonzalez@northwind-logistics.com", None),
        ("maria@northwind..com", None),
        ("", None),
        (None, None),
        (42, None),
        (["maria@northwind-logistics.com"], None),
    ],
)
def test_normalise_email(value: Any, expected: str | None) -> None:
    assert normalise_email(value) == expected


# ---- identities_of ----------------------------------------------------------------------------


def test_identities_in_priority_order_user_id_email_anonymous_id() -> None:
    event = identify(
        anonymous_id="anon-1",
        user_id="usr_48213",
        traits={"email": "Maria.Gonzalez@northwind-logistics.com"},
    )

    assert identities_of(event) == [
        Identity(USER, "usr_48213"),
        Identity(EMAIL, "maria.gonzalez@northwind-logistics.com"),
        Identity(ANON, "anon-1"),
    ]


@pytest.mark.parametrize(
    "placeholder",
    ["null", "NULL", "undefined", "0", "-1", "anonymous", "Anonymous", " none ", "[object Object]"],
)
def test_placeholder_ids_never_identify(placeholder: str) -> None:
    event = identify(
        user_id=placeholder,
        anonymous_id=placeholder,
        traits={"email": "test@test.com"},
    )

    assert identities_of(event) == []


def test_a_placeholder_user_id_leaves_the_real_anonymous_id() -> None:
    event = raw_event(user_id="undefined", anonymous_id="6f1c2d9e")

    assert identities_of(event) == [Identity(ANON, "6f1c2d9e")]


def test_ids_are_trimmed_but_keep_their_case() -> None:
    event = raw_event(user_id="  USR_48213 ", anonymous_id="Anon-AbC")

    assert identities_of(event) == [Identity(USER, "USR_48213"), Identity(ANON, "Anon-AbC")]


def test_an_email_only_in_properties_does_not_identify() -> None:
    event = raw_event(properties={"email": "maria.gonzalez@northwind-logistics.com"})

    assert identities_of(event) == [Identity(ANON, "anon-1")]


@pytest.mark.parametrize(
    ("identities", "identified"),
    [
        ([Identity(ANON, "anon-1")], False),
        ([], False),
        ([Identity(EMAIL, "maria@northwind-logistics.com"), Identity(ANON, "anon-1")], True),
        ([Identity(USER, "usr-1")], True),
    ],
)
def test_is_identified_by_user_id_or_email(identities: list[Identity], identified: bool) -> None:
    assert is_identified(identities) is identified


# ---- resolve_lead -----------------------------------------------------------------------------

MARIA_USER = Identity(USER, "usr_48213")
MARIA_EMAIL = Identity(EMAIL, "maria.gonzalez@northwind-logistics.com")
MARIA_ANON = Identity(ANON, "anon-maria")


def test_an_unknown_visitor_becomes_a_new_lead_with_all_identities() -> None:
    resolution = resolve_lead([MARIA_EMAIL, MARIA_ANON], known={}, new_lead_id=fresh())

    assert resolution is not None
    assert resolution.lead_id == "new-lead-1"
    assert resolution.created is True
    assert resolution.new_links == (MARIA_EMAIL, MARIA_ANON)


def test_a_known_user_id_names_the_lead() -> None:
    resolution = resolve_lead(
        [MARIA_USER, MARIA_ANON], known={MARIA_USER: "lead-maria"}, new_lead_id=fresh()
    )

    assert resolution is not None
    assert (resolution.lead_id, resolution.created) == ("lead-maria", False)
    assert resolution.new_links == (MARIA_ANON,)


def test_an_email_links_a_new_device_to_the_lead_of_an_earlier_anonymous_visit() -> None:
    """The pricing-page visit (anonymous) made the lead; the identify from another browser brings
    the same email: the new anonymous id joins that lead instead of making a second one."""
    known = {MARIA_ANON: "lead-maria", MARIA_EMAIL: "lead-maria"}
    other_browser = Identity(ANON, "anon-maria-phone")

    resolution = resolve_lead([MARIA_EMAIL, other_browser], known=known, new_lead_id=fresh())

    assert resolution is not None
    assert (resolution.lead_id, resolution.created) == ("lead-maria", False)
    assert resolution.new_links == (other_browser,)


def test_identifying_an_anonymous_lead_links_email_and_user_id_to_it() -> None:
    resolution = resolve_lead(
        [MARIA_USER, MARIA_EMAIL, MARIA_ANON],
        known={MARIA_ANON: "lead-maria"},
        new_lead_id=fresh(),
    )

    assert resolution is not None
    assert (resolution.lead_id, resolution.created) == ("lead-maria", False)
    assert resolution.new_links == (MARIA_USER, MARIA_EMAIL)


@pytest.mark.parametrize(
    ("known", "lead_id"),
    [
        pytest.param(
            {MARIA_USER: "lead-by-user", MARIA_EMAIL: "lead-by-email", MARIA_ANON: "lead-by-anon"},
            "lead-by-user",
            id="user-id-beats-email-and-anonymous-id",
        ),
        pytest.param(
            {MARIA_EMAIL: "lead-by-email", MARIA_ANON: "lead-by-anon"},
            "lead-by-email",
            id="email-beats-anonymous-id",
        ),
    ],
)
def test_when_known_identities_disagree_the_highest_priority_wins_and_nothing_is_relinked(
    known: dict[Identity, str], lead_id: str
) -> None:
    resolution = resolve_lead(
        [MARIA_USER, MARIA_EMAIL, MARIA_ANON], known=known, new_lead_id=fresh()
    )

    assert resolution is not None
    assert resolution.lead_id == lead_id
    assert resolution.created is False
    assert not set(resolution.new_links) & set(known), "a known identity keeps its lead"


def test_no_usable_identity_resolves_to_nobody() -> None:
    def must_not_be_called() -> str:
        raise AssertionError("no lead is made for an event without identities")

    assert (
        resolve_lead([], known={MARIA_ANON: "lead-maria"}, new_lead_id=must_not_be_called) is None
    )


def test_a_known_lead_does_not_consume_a_new_lead_id() -> None:
    new_lead_id = fresh()

    resolve_lead([MARIA_ANON], known={MARIA_ANON: "lead-maria"}, new_lead_id=new_lead_id)

    assert new_lead_id() == "new-lead-1"


# ---- merge_profile ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("traits", "first", "last"),
    [
        pytest.param({"name": "Jonas Weber"}, "Jonas", "Weber", id="full-name"),
        pytest.param(
            {"name": "María José  García López"}, "María", "José García López", id="several-words"
        ),
        pytest.param({"name": "Cher"}, "Cher", None, id="one-word"),
        pytest.param(
            {"firstName": "Priya", "lastName": "Raman"}, "Priya", "Raman", id="segment-names"
        ),
        pytest.param(
            {"first_name": "Priya", "last_name": "Raman"}, "Priya", "Raman", id="snake-names"
        ),
        pytest.param(
            {"firstName": "Priya", "name": "P. Raman"}, "Priya", None, id="parts-beat-full-name"
        ),
        pytest.param({"firstName": "  Priya \t"}, "Priya", None, id="trimmed"),
    ],
)
def test_names(traits: dict[str, Any], first: str | None, last: str | None) -> None:
    merged = merge_profile(LeadProfile(), traits)

    assert (merged.first_name, merged.last_name) == (first, last)


def test_a_full_profile_from_segment_traits() -> None:
    merged = merge_profile(
        LeadProfile(),
        {
            "email": " Maria.Gonzalez@Northwind-Logistics.com ",
            "firstName": "María",
            "lastName": "González",
            "title": "VP of Sales  Operations",
            "company": {"name": "Northwind Logistics", "employee_count": 850},
        },
    )

    assert merged == LeadProfile(
        email="maria.gonzalez@northwind-logistics.com",
        first_name="María",
        last_name="González",
        title="VP of Sales Operations",
        company="Northwind Logistics",
        company_domain="northwind-logistics.com",
    )


@pytest.mark.parametrize(
    ("traits", "company"),
    [
        ({"company": "Brightwave Media"}, "Brightwave Media"),
        ({"company": {"name": "Brightwave Media", "industry": "Media"}}, "Brightwave Media"),
        ({"companyName": "Brightwave Media"}, "Brightwave Media"),
        ({"company_name": "Brightwave Media"}, "Brightwave Media"),
        ({"company": {"industry": "Media"}}, None),
        ({"company": 42}, None),
    ],
)
def test_company_name(traits: dict[str, Any], company: str | None) -> None:
    assert merge_profile(LeadProfile(), traits).company == company


@pytest.mark.parametrize("title_trait", ["title", "jobTitle", "job_title"])
def test_title(title_trait: str) -> None:
    assert merge_profile(LeadProfile(), {title_trait: "Head of RevOps"}).title == "Head of RevOps"


def test_absent_blank_or_invalid_traits_keep_what_was_known() -> None:
    known = profile()

    merged = merge_profile(
        known,
        {"email": "not-an-email", "firstName": "   ", "title": None, "company": "", "plan": "pro"},
    )

    assert merged == known


def test_present_traits_override() -> None:
    merged = merge_profile(
        profile(),
        {"title": "Chief Revenue Officer", "firstName": "Maria", "company": "Northwind Group"},
    )

    assert merged.title == "Chief Revenue Officer"
    assert merged.first_name == "Maria"
    assert merged.company == "Northwind Group"
    assert merged.last_name == "González", "a name part not given is kept"


def test_a_new_free_mail_address_keeps_the_known_company_domain() -> None:
    merged = merge_profile(profile(), {"email": "maria.g@gmail.com"})

    assert merged.email == "maria.g@gmail.com"
    assert merged.company_domain == "northwind-logistics.com"


def test_a_new_work_address_moves_the_company_domain() -> None:
    merged = merge_profile(profile(), {"email": "maria@kraemer-maschinenbau.de"})

    assert merged.company_domain == "kraemer-maschinenbau.de"


# ---- company_domain, opts_out -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "domain"),
    [
        ("maria.gonzalez@northwind-logistics.com", "northwind-logistics.com"),
        ("priya.raman@brightwave.co.uk", "brightwave.co.uk"),
        ("jonas.weber@gmail.com", None),
        ("someone@outlook.com", None),
        ("someone@gmx.de", None),
        ("someone@proton.me", None),
        (None, None),
        ("", None),
    ],
)
def test_company_domain(email: str | None, domain: str | None) -> None:
    assert company_domain(email) == domain


@pytest.mark.parametrize(
    ("event", "opted_out"),
    [
        pytest.param(raw_event(event="Unsubscribed"), True, id="unsubscribed-track"),
        pytest.param(raw_event(event=" email unsubscribed "), True, id="email-unsubscribed-track"),
        pytest.param(identify(traits={"unsubscribed": True}), True, id="trait"),
        pytest.param(identify(traits={"unsubscribed": False}), False, id="trait-false"),
        pytest.param(identify(traits={"unsubscribed": "no"}), False, id="trait-not-a-boolean"),
        pytest.param(raw_event(event="Demo Requested"), False, id="other-track"),
        pytest.param(
            raw_event(type="page", name="Unsubscribed"), False, id="page-named-unsubscribed"
        ),
        pytest.param(raw_event(event="Newsletter Subscribed"), False, id="subscribed"),
    ],
)
def test_opts_out(event: Any, opted_out: bool) -> None:
    assert opts_out(event) is opted_out
