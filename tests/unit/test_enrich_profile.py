"""Trait normalisation, company domains, free-mail / disposable flags, consent, merge folding
(services/enrich/profile.py, mailboxes.py)."""

from __future__ import annotations

from typing import Any

import pytest

from services.enrich.mailboxes import is_disposable, is_free_mail
from services.enrich.profile import (
    company_domain_of,
    consent_after,
    folded_consent,
    folded_profile,
    profile_after,
)
from shared.contracts import Consent, LeadProfile
from tests.unit.builders import raw_event

pytestmark = pytest.mark.unit


def test_form_traits_are_normalised() -> None:
    traits = {
        "email": "  Ada.Lovelace@Initech.COM ",
        "name": "Dr. Ada Lovelace",
        "title": "  VP   Engineering ",
        "phone": "020 7183 8750",
        "country": "United Kingdom",
        "company": {"name": "Initech LLC"},
    }

    profile = profile_after(LeadProfile(), traits)

    assert profile == LeadProfile(
        email="ada.lovelace@initech.com",
        first_name="Ada",
        last_name="Lovelace",
        title="VP Engineering",
        company="Initech LLC",
        company_domain="initech.com",
        phone="+442071838750",
        country="GB",
        seniority="vp",
        job_function="engineering",
    )


def test_bad_values_are_ignored_and_earlier_ones_kept() -> None:
    before = LeadProfile(email="ada@initech.com", phone="+442071838750", country="GB")

    after = profile_after(before, {"email": "not-an-email", "phone": "12", "country": "Atlantis"})

    assert (after.email, after.phone, after.country) == ("ada@initech.com", "+442071838750", "GB")


@pytest.mark.parametrize(
    ("traits", "domain"),
    [
        ({"email": "vera.kim@acme-robotics.com"}, "acme-robotics.com"),
        ({"email": "vera.kim@gmail.com"}, None),  # free mail: no company from the address
        ({"email": "vera.kim@gmail.com", "website": "https://www.acme-robotics.com/"}, "acme-robotics.com"),
        ({"email": "x1@mailinator.com"}, None),  # disposable
        ({"email": "vera@googlemail.com", "company": {"website": "hooli.io"}}, "hooli.io"),
        ({"email": "vera@eu.acme-robotics.com"}, "eu.acme-robotics.com"),
        ({}, None),
    ],
)  # fmt: skip
def test_company_domain(traits: dict[str, Any], domain: str | None) -> None:
    assert company_domain_of(traits) == domain
    assert profile_after(LeadProfile(), traits).company_domain == domain


def test_free_mail_and_disposable_flags() -> None:
    assert is_free_mail("gmail.com")
    assert is_free_mail("yahoo.co.uk")
    assert is_free_mail("gmx.de")
    assert is_disposable("mailinator.com")
    assert is_disposable("sub.yopmail.com")
    assert not is_free_mail("acme-robotics.com")
    assert not is_disposable("acme-robotics.com")

    free = profile_after(LeadProfile(), {"email": "jonas.weber@gmail.com"})
    throwaway = profile_after(LeadProfile(), {"email": "qq1@mailinator.com"})

    assert (free.free_mail, free.disposable_email, free.company_domain) == (True, False, None)
    assert (throwaway.free_mail, throwaway.disposable_email) == (False, True)


@pytest.mark.parametrize(
    ("event", "traits", "opted_out"),
    [
        ({"event": "Unsubscribed"}, {}, True),
        ({"event": "Email Unsubscribed"}, {}, True),
        ({"event": "Page Viewed"}, {"unsubscribed": True}, True),
        ({"event": "Page Viewed"}, {"unsubscribed": "true"}, True),
        ({"event": "Page Viewed"}, {"unsubscribed": "TRUE"}, True),
        ({"event": "Page Viewed"}, {"unsubscribed": False}, False),
        ({"event": "Page Viewed"}, {"unsubscribed": "false"}, False),
        ({"event": "Page Viewed"}, {}, False),
    ],
)
def test_opt_out_signals(event: dict[str, Any], traits: dict[str, Any], opted_out: bool) -> None:
    consent = consent_after(
        Consent(), event=raw_event(**event), traits=traits, suppression_reason=None
    )

    assert consent.email_opt_out is opted_out
    assert consent.suppressed is False


def test_suppression_list_suppresses_and_says_why() -> None:
    consent = consent_after(
        Consent(), event=raw_event(), traits={}, suppression_reason="globex.com (legal request)"
    )

    assert consent == Consent(
        email_opt_out=True,
        suppressed=True,
        reasons=["suppression list: globex.com (legal request)"],
    )


def test_consent_is_never_granted_back_by_an_event() -> None:
    opted_out = Consent(email_opt_out=True, reasons=["event: Unsubscribed"])

    after = consent_after(
        opted_out, event=raw_event(), traits={"unsubscribed": False}, suppression_reason=None
    )

    assert after.email_opt_out is True


def test_a_merge_fills_gaps_but_keeps_the_survivors_values_and_every_opt_out() -> None:
    survivor = LeadProfile(email="maria@northwind-logistics.com", title=None, company="Northwind")
    merged = LeadProfile(email="m.g@gmail.com", title="VP Sales", phone="+34911234567")

    folded = folded_profile(survivor, merged)

    assert folded.email == "maria@northwind-logistics.com"
    assert (folded.title, folded.phone, folded.company) == ("VP Sales", "+34911234567", "Northwind")
    assert folded_consent(Consent(), Consent(email_opt_out=True, reasons=["x"])).email_opt_out


def test_a_call_without_traits_keeps_a_settled_profile_as_it_is() -> None:
    settled = profile_after(LeadProfile(), {"email": "ada@initech.com", "title": "VP Sales"})

    assert profile_after(settled, {}) is settled


def test_a_call_without_traits_still_derives_what_a_stored_profile_lacks() -> None:
    # e.g. a profile folded by a merge: email from one lead, nothing derived from it yet.
    unsettled = LeadProfile(email="ada@gmail.com", title="VP Sales", company_domain="initech.com")

    after = profile_after(unsettled, {})

    assert (after.seniority, after.job_function, after.free_mail) == ("vp", "sales", True)
    assert after.company_domain == "initech.com"  # a free-mail address never replaces it


def test_repeated_traits_give_the_same_profile_whatever_their_order() -> None:
    before = LeadProfile(email="ada@initech.com")
    traits = {"title": "Head of Marketing", "address": {"country": "Germany"}, "phone": 4930901820}
    reordered = dict(reversed(list(traits.items())))

    first = profile_after(before, traits)

    assert profile_after(before, reordered) == first
    assert (first.seniority, first.country, first.phone) == ("vp", "DE", "+4930901820")
    assert profile_after(first, traits) == first


def test_traits_that_are_not_json_are_still_read() -> None:
    traits = {"email": "ada@initech.com", "tags": {"a", "b"}}  # a set: built in code, not JSON

    assert profile_after(LeadProfile(), traits).email == "ada@initech.com"


def test_consent_without_a_new_withdrawal_is_kept_as_it_is() -> None:
    suppressed = consent_after(
        Consent(), event=raw_event(), traits={}, suppression_reason="globex.com (legal)"
    )
    calm = Consent()

    assert consent_after(calm, event=raw_event(), traits={}, suppression_reason=None) is calm
    again = consent_after(
        suppressed,
        event=raw_event(),
        traits={"unsubscribed": "no"},
        suppression_reason="globex.com (legal)",
    )
    assert again is suppressed
    later = consent_after(
        suppressed, event=raw_event(event="Unsubscribed"), traits={}, suppression_reason=None
    )
    assert later.reasons == ["suppression list: globex.com (legal)", "event: Unsubscribed"]
