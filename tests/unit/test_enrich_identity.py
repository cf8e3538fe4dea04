"""Identity resolution: guardrails, priority, merges (services/enrich/identity.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from services.enrich.identity import (
    Identity,
    IdentityKind,
    LeadFacts,
    RefusalReason,
    identities_of,
    is_identifying,
    is_placeholder_email,
    placeholder_alias_refusal,
    previous_identities,
    resolve,
    usable_email,
)
from tests.unit.builders import identify, raw_event

pytestmark = pytest.mark.unit

USER = IdentityKind.USER_ID
EMAIL = IdentityKind.EMAIL
ANON = IdentityKind.ANONYMOUS_ID
MARIA_USER = Identity(USER, "usr_48213")
MARIA_EMAIL = Identity(EMAIL, "maria.gonzalez@northwind-logistics.com")
MARIA_ANON = Identity(ANON, "anon-maria")


def fresh() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"new-lead-{next(counter)}"


def run(
    identities: list[Identity],
    known: dict[Identity, str] | None = None,
    leads: dict[str, LeadFacts] | None = None,
    limit: int = 20,
    previous: str | None = None,
) -> Any:
    return resolve(
        identities,
        known=known or {},
        leads=leads or {},
        new_lead_id=fresh(),
        anonymous_ids_per_week=limit,
        previous=[Identity(USER, previous), Identity(ANON, previous)] if previous else (),
    )


# ---- guardrails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Maria.Gonzalez@Northwind-Logistics.COM", "maria.gonzalez@northwind-logistics.com"),
        ("  d.okafor@fernhill-analytics.com\n", "d.okafor@fernhill-analytics.com"),
        ("priya.raman+leads@brightwave.co.uk", "priya.raman+leads@brightwave.co.uk"),
        ("test@lumenboard.io", "test@lumenboard.io"),  # a real mailbox at a real company
        ("jonas.weber@gmail.com", "jonas.weber@gmail.com"),
        ("test@test.com", None),
        ("TEST@Test.com", None),
        ("noreply@example.com", None),
        ("maria@example.org", None),
        ("asdf@asdf.com", None),
        ("aaa@aaa.com", None),
        ("foo@foo.com", None),
        ("someone@shop.test", None),
        ("maria@localhost", None),
        ("not an email", None),
        ("maria.gonzalez@", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_usable_email(value: Any, expected: str | None) -> None:
    assert usable_email(value) == expected


def test_a_real_address_at_a_company_named_test_is_not_junk() -> None:
    assert not is_placeholder_email("maria@testo.de")


@pytest.mark.parametrize(
    "placeholder",
    ["null", "NULL", "undefined", "0", "-1", "anonymous", "Anonymous", " none ", "[object Object]",
     "   ", "guest"],
)  # fmt: skip
def test_placeholder_ids_never_identify(placeholder: str) -> None:
    event = identify(
        user_id=placeholder, anonymous_id=placeholder, traits={"email": "test@test.com"}
    )

    assert identities_of(event) == []
    assert run(identities_of(event)) is None


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


def test_email_in_context_traits_identifies_too() -> None:
    event = raw_event(context={"traits": {"email": "maria@northwind-logistics.com"}})

    assert Identity(EMAIL, "maria@northwind-logistics.com") in identities_of(event)


def test_an_email_only_in_properties_does_not_identify() -> None:
    event = raw_event(properties={"email": "maria.gonzalez@northwind-logistics.com"})

    assert identities_of(event) == [Identity(ANON, "anon-1")]
    assert not is_identifying(identities_of(event))


def test_an_alias_previous_id_may_be_a_user_id_or_an_anonymous_id() -> None:
    """Segment: previousId is whatever id the person had, a userId or an anonymousId."""
    event = raw_event(type="alias", user_id="usr-9", previous_id="old-id", anonymous_id=None)

    assert identities_of(event) == [Identity(USER, "usr-9")]
    assert previous_identities(event) == [Identity(USER, "old-id"), Identity(ANON, "old-id")]
    assert placeholder_alias_refusal(event) is None


def test_an_alias_with_a_placeholder_previous_id_is_a_refusal() -> None:
    event = raw_event(type="alias", user_id="usr-9", previous_id="undefined", anonymous_id=None)

    assert previous_identities(event) == []
    refusal = placeholder_alias_refusal(event)
    assert refusal is not None
    assert refusal.reason is RefusalReason.PLACEHOLDER_PREVIOUS_ID


# ---- resolution -------------------------------------------------------------------------------


def test_an_unknown_visitor_becomes_a_new_lead_with_all_identities() -> None:
    resolution = run([MARIA_EMAIL, MARIA_ANON])

    assert (resolution.lead_id, resolution.created) == ("new-lead-1", True)
    assert resolution.new_links == (MARIA_EMAIL, MARIA_ANON)
    assert resolution.merged == ()


def test_identify_of_an_anonymous_visitor_keeps_its_lead_id() -> None:
    """First identification: the anonymous lead becomes known, same lead_id, nothing merged."""
    resolution = run(
        [MARIA_USER, MARIA_EMAIL, MARIA_ANON],
        known={MARIA_ANON: "lead-anon"},
        leads={"lead-anon": LeadFacts("lead-anon", anonymous_ids_this_week=1)},
    )

    assert (resolution.lead_id, resolution.created) == ("lead-anon", False)
    assert resolution.new_links == (MARIA_USER, MARIA_EMAIL)
    assert resolution.merged == ()


def test_user_id_beats_email_beats_anonymous_id() -> None:
    known = {MARIA_USER: "lead-user", MARIA_EMAIL: "lead-email", MARIA_ANON: "lead-anon"}
    leads = {
        "lead-user": LeadFacts("lead-user", user_ids=frozenset({"usr_48213"}), identified=True),
        "lead-email": LeadFacts("lead-email", identified=True),
        "lead-anon": LeadFacts("lead-anon", anonymous_ids_this_week=1),
    }

    resolution = run([MARIA_USER, MARIA_EMAIL, MARIA_ANON], known=known, leads=leads)

    assert resolution.lead_id == "lead-user"
    assert resolution.merged == ("lead-email", "lead-anon")
    assert resolution.absorbed_anonymous == {"lead-anon"}


def test_anonymous_browsing_on_a_new_device_is_absorbed_into_the_known_lead() -> None:
    known = {MARIA_EMAIL: "lead-maria", MARIA_ANON: "lead-anon"}
    leads = {
        "lead-maria": LeadFacts("lead-maria", identified=True),
        "lead-anon": LeadFacts("lead-anon", anonymous_ids_this_week=1),
    }

    resolution = run([MARIA_EMAIL, MARIA_ANON], known=known, leads=leads)

    assert resolution.lead_id == "lead-maria"
    assert resolution.merged == ("lead-anon",)
    assert resolution.absorbed_anonymous == {"lead-anon"}


def test_two_known_leads_of_one_person_merge_into_the_user_id_lead() -> None:
    """A userId lead (product sign-up) and an email lead (webinar list) meet in one identify."""
    known = {MARIA_USER: "lead-product", MARIA_EMAIL: "lead-webinar"}
    leads = {
        "lead-product": LeadFacts(
            "lead-product", user_ids=frozenset({"usr_48213"}), identified=True
        ),
        "lead-webinar": LeadFacts("lead-webinar", identified=True),
    }

    resolution = run([MARIA_USER, MARIA_EMAIL], known=known, leads=leads)

    assert resolution.lead_id == "lead-product"
    assert resolution.merged == ("lead-webinar",)
    assert resolution.absorbed_anonymous == frozenset()


def test_two_people_on_one_browser_stay_two_leads() -> None:
    """anonymousId shared by two logged-in users: the second userId never joins the first lead."""
    known = {Identity(ANON, "shared-laptop"): "lead-ana"}
    leads = {"lead-ana": LeadFacts("lead-ana", user_ids=frozenset({"usr-ana"}), identified=True)}

    resolution = run([Identity(USER, "usr-bob"), Identity(ANON, "shared-laptop")], known, leads)

    assert (resolution.lead_id, resolution.created) == ("new-lead-1", True)
    assert resolution.new_links == (Identity(USER, "usr-bob"),)
    assert resolution.merged == ()
    assert [r.identity for r in resolution.refused] == [Identity(ANON, "shared-laptop")]


def test_leads_with_different_user_ids_never_merge_through_an_email() -> None:
    known = {Identity(USER, "usr-1"): "lead-1", MARIA_EMAIL: "lead-2"}
    leads = {
        "lead-1": LeadFacts("lead-1", user_ids=frozenset({"usr-1"}), identified=True),
        "lead-2": LeadFacts("lead-2", user_ids=frozenset({"usr-2"}), identified=True),
    }

    resolution = run([Identity(USER, "usr-1"), MARIA_EMAIL], known=known, leads=leads)

    assert resolution.lead_id == "lead-1"
    assert resolution.merged == ()
    assert resolution.refused[0].reason is RefusalReason.ANOTHER_USER_ID
    assert resolution.refused[0].other_lead_id == "lead-2"
    assert "another userId" in resolution.refused[0].text
    assert MARIA_EMAIL.value not in resolution.refused[0].text  # never the value: PII


def test_anonymous_ids_per_week_limit_stops_new_devices_attaching() -> None:
    leads = {"lead-kiosk": LeadFacts("lead-kiosk", identified=True, anonymous_ids_this_week=3)}
    known = {MARIA_EMAIL: "lead-kiosk"}

    resolution = run([MARIA_EMAIL, Identity(ANON, "device-4")], known, leads, limit=3)

    assert resolution.lead_id == "lead-kiosk"
    assert resolution.new_links == ()
    assert resolution.refused[0].reason is RefusalReason.ANONYMOUS_ID_LIMIT


def test_the_limit_also_stops_absorbing_anonymous_leads() -> None:
    leads = {
        "lead-kiosk": LeadFacts("lead-kiosk", identified=True, anonymous_ids_this_week=3),
        "lead-anon": LeadFacts("lead-anon", anonymous_ids_this_week=1),
    }
    known = {MARIA_EMAIL: "lead-kiosk", MARIA_ANON: "lead-anon"}

    resolution = run([MARIA_EMAIL, MARIA_ANON], known, leads, limit=3)

    assert resolution.merged == ()
    assert resolution.refused


def test_resolution_is_deterministic() -> None:
    known = {MARIA_USER: "lead-a", MARIA_EMAIL: "lead-b", MARIA_ANON: "lead-c"}
    leads = {k: LeadFacts(k, identified=k != "lead-c") for k in ("lead-a", "lead-b", "lead-c")}

    first = run([MARIA_USER, MARIA_EMAIL, MARIA_ANON], known, leads)
    again = run([MARIA_USER, MARIA_EMAIL, MARIA_ANON], known, leads)

    assert first == again


@pytest.mark.parametrize("identity", [MARIA_EMAIL, MARIA_ANON])
def test_a_returning_visitors_single_known_identity_names_its_lead_and_changes_nothing(
    identity: Identity,
) -> None:
    def new_lead_id() -> str:
        raise AssertionError("no lead is created for a known visitor")

    resolution = resolve(
        [identity],
        known={identity: "lead-maria"},
        leads={"lead-maria": LeadFacts("lead-maria", identified=True, anonymous_ids_this_week=99)},
        new_lead_id=new_lead_id,
        anonymous_ids_per_week=20,
    )

    assert resolution is not None
    assert (resolution.lead_id, resolution.created) == ("lead-maria", False)
    assert (resolution.new_links, resolution.merged, resolution.refused) == ((), (), ())
    assert resolution.absorbed_anonymous == frozenset()


# ---- email-derived userIds (lead lists used to set userId to the email) -------------------------

KATHERINE_EMAIL = Identity(EMAIL, "katherine@initech.com")


def test_a_website_user_id_joins_the_lead_an_import_created_by_email() -> None:
    """The imported lead has no userId of its own: the site's userId for that email joins it."""
    known = {KATHERINE_EMAIL: "lead-imported"}
    leads = {"lead-imported": LeadFacts("lead-imported", identified=True)}

    resolution = run(
        [Identity(USER, "nc-u5"), KATHERINE_EMAIL, Identity(ANON, "anon-k")], known, leads
    )

    assert (resolution.lead_id, resolution.created) == ("lead-imported", False)
    assert resolution.new_links == (Identity(USER, "nc-u5"), Identity(ANON, "anon-k"))
    assert resolution.refused == ()


def test_a_legacy_import_whose_user_id_is_its_email_does_not_claim_a_user_id() -> None:
    """An old import row (userId = email) replayed after the website lead exists: one lead."""
    known = {KATHERINE_EMAIL: "lead-web"}
    leads = {"lead-web": LeadFacts("lead-web", user_ids=frozenset({"nc-u5"}), identified=True)}

    resolution = run([Identity(USER, "katherine@initech.com"), KATHERINE_EMAIL], known, leads)

    assert resolution.lead_id == "lead-web"
    assert resolution.refused == ()


def test_a_user_id_that_is_the_events_email_in_another_case_is_email_derived_too() -> None:
    known = {KATHERINE_EMAIL: "lead-web"}
    leads = {"lead-web": LeadFacts("lead-web", user_ids=frozenset({"nc-u5"}), identified=True)}

    resolution = run([Identity(USER, " Katherine@Initech.com"), KATHERINE_EMAIL], known, leads)

    assert resolution.lead_id == "lead-web"
    assert resolution.refused == ()


def test_an_email_known_to_a_lead_with_another_real_user_id_is_still_refused() -> None:
    known = {KATHERINE_EMAIL: "lead-1"}
    leads = {"lead-1": LeadFacts("lead-1", user_ids=frozenset({"nc-u1"}), identified=True)}

    resolution = run([Identity(USER, "nc-u5"), KATHERINE_EMAIL], known, leads)

    assert resolution.created
    assert [r.reason for r in resolution.refused] == [RefusalReason.ANOTHER_USER_ID]


# ---- alias ------------------------------------------------------------------------------------


def test_an_alias_of_two_known_user_ids_merges_their_leads() -> None:
    """The guardrail keeps two userIds apart, unless an alias says they are one person."""
    known = {Identity(USER, "old-account"): "lead-old", Identity(USER, "new-account"): "lead-new"}
    leads = {
        "lead-old": LeadFacts("lead-old", user_ids=frozenset({"old-account"}), identified=True),
        "lead-new": LeadFacts("lead-new", user_ids=frozenset({"new-account"}), identified=True),
    }

    resolution = run([Identity(USER, "new-account")], known, leads, previous="old-account")

    assert resolution.lead_id == "lead-new"  # the alias's userId is the one that stays
    assert resolution.merged == ("lead-old",)
    assert resolution.aliased == {"lead-old"}
    assert resolution.refused == ()


def test_an_alias_to_a_new_user_id_gives_the_previous_lead_that_user_id() -> None:
    known = {Identity(USER, "old-account"): "lead-old"}
    leads = {"lead-old": LeadFacts("lead-old", user_ids=frozenset({"old-account"}))}

    resolution = run([Identity(USER, "new-account")], known, leads, previous="old-account")

    assert (resolution.lead_id, resolution.created) == ("lead-old", False)
    assert resolution.new_links == (Identity(USER, "new-account"),)
    assert resolution.merged == ()


def test_after_an_alias_either_user_id_names_the_lead() -> None:
    leads = {"lead-1": LeadFacts("lead-1", user_ids=frozenset({"old", "new"}), identified=True)}
    known = {Identity(USER, "old"): "lead-1", Identity(ANON, "laptop"): "lead-1"}

    resolution = run([Identity(USER, "old"), Identity(ANON, "phone")], known, leads)

    assert (resolution.lead_id, resolution.created) == ("lead-1", False)
    assert resolution.new_links == (Identity(ANON, "phone"),)


def test_an_alias_of_an_unknown_previous_id_links_it_as_an_anonymous_id() -> None:
    resolution = run([Identity(USER, "usr-9")], previous="anon-old")

    assert resolution.created
    assert resolution.new_links == (Identity(USER, "usr-9"), Identity(ANON, "anon-old"))


def test_an_alias_of_a_known_anonymous_id_absorbs_its_visitor() -> None:
    known = {Identity(ANON, "anon-old"): "lead-visitor"}
    leads = {"lead-visitor": LeadFacts("lead-visitor", anonymous_ids_this_week=1)}

    resolution = run([Identity(USER, "usr-9")], known, leads, previous="anon-old")

    assert resolution.lead_id == "lead-visitor"  # first identification keeps the lead id
    assert resolution.new_links == (Identity(USER, "usr-9"),)


def test_an_alias_still_respects_the_anonymous_ids_per_week_limit() -> None:
    known = {Identity(USER, "usr-9"): "lead-9", Identity(ANON, "anon-old"): "lead-visitor"}
    leads = {
        "lead-9": LeadFacts(
            "lead-9", user_ids=frozenset({"usr-9"}), identified=True, anonymous_ids_this_week=3
        ),
        "lead-visitor": LeadFacts("lead-visitor", anonymous_ids_this_week=1),
    }

    resolution = run([Identity(USER, "usr-9")], known, leads, limit=3, previous="anon-old")

    assert resolution.merged == ()
    assert [r.reason for r in resolution.refused] == [RefusalReason.ANONYMOUS_ID_LIMIT]
