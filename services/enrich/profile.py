"""A lead's normalised profile after an event's traits, and its consent. Pure, no I/O.

Traits are what clients send (Segment's reserved traits in camelCase or snake_case, rudder's
`context.traits`); values that do not normalise are ignored (the event itself is still good), so
a typo in a phone field never holds a lead back. Free text (names, title, company) that starts
like a spreadsheet formula is kept as text with a leading apostrophe (`normalize.formula_safe`),
as a lead-list import stores it: routing decisions and exports quote these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from services.enrich.identity import usable_email
from services.enrich.mailboxes import is_disposable, is_free_mail
from services.enrich.titles import function_of, seniority_of
from shared import normalize
from shared.contracts import Consent, LeadProfile, RawEvent

UNSUBSCRIBE_EVENTS = frozenset(
    {"unsubscribed", "email unsubscribed", "unsubscribe", "opted out", "email opted out"}
)
_TRUE = frozenset({"true", "yes", "1", "y", "on"})


def _text(traits: Mapping[str, Any], *names: str) -> str | None:
    """The first of the traits `names` that holds text, cleaned and formula-safe."""
    for name in names:
        value = traits.get(name)
        if isinstance(value, str) and (cleaned := normalize.text(value)):
            return normalize.formula_safe(cleaned)
    return None


def _safe(value: str | None) -> str | None:
    return None if value is None else normalize.formula_safe(value)


def _company_name(traits: Mapping[str, Any]) -> str | None:
    company = traits.get("company")
    if isinstance(company, dict):
        return _text(company, "name")
    return _text(traits, "company", "companyName", "company_name")


def _country(traits: Mapping[str, Any]) -> str | None:
    address = traits.get("address")
    candidates = [traits.get("country")]
    if isinstance(address, dict):
        candidates.append(address.get("country"))
    for value in candidates:
        if isinstance(value, str) and value.strip():
            try:
                return normalize.country(value)
            except normalize.InvalidValue:
                continue
    return None


def _phone(traits: Mapping[str, Any], region: str | None) -> str | None:
    value = traits.get("phone") or traits.get("phoneNumber") or traits.get("phone_number")
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    try:
        return normalize.phone(str(value), default_region=region)
    except normalize.InvalidValue:
        return None


def _website_domain(traits: Mapping[str, Any]) -> str | None:
    company = traits.get("company")
    candidates = [traits.get("website"), traits.get("companyWebsite"), traits.get("domain")]
    if isinstance(company, dict):
        candidates += [company.get("website"), company.get("domain")]
    for value in candidates:
        if isinstance(value, str) and (domain := normalize.domain_of_website(value)):
            return domain
    return None


def email_company_domain(email: str | None) -> str | None:
    """The employer's domain from a work email; None for free-mail and disposable addresses."""
    if not email:
        return None
    return _email_company_domain(email)


@lru_cache(maxsize=4_096)  # asked several times per event for the lead's (same) address
def _email_company_domain(email: str) -> str | None:
    domain = normalize.domain_of_email(email)
    return None if is_free_mail(domain) or is_disposable(domain) else domain


def profile_after(profile: LeadProfile, traits: Mapping[str, Any]) -> LeadProfile:
    """The profile after an event's traits: a usable trait overrides, an absent one keeps.

    company_domain comes from a work email first, then the website trait, and is never taken
    from a free-mail or disposable address.

    Pure, so it is cached: most calls carry no traits (the profile is returned as it is when
    nothing derived from it changes), and clients that repeat a lead's traits on every call
    (rudder's `context.traits`) hit the cache keyed by the traits' JSON.
    """
    if not traits:
        return _settled(profile)
    try:
        key = orjson.dumps(traits, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (only possible for traits built in code): no cache
        return _profile_after(profile, traits)
    return _profile_after_cached(profile, key)


def _settled(profile: LeadProfile) -> LeadProfile:
    """`_profile_after(profile, {})`, returning `profile` itself when nothing would change."""
    email = profile.email
    email_domain = normalize.domain_of_email(email) if email else None
    if (
        profile.company_domain == (email_company_domain(email) or profile.company_domain)
        and profile.seniority == seniority_of(profile.title)
        and profile.job_function == function_of(profile.title)
        and profile.free_mail == bool(email_domain and is_free_mail(email_domain))
        and profile.disposable_email == bool(email_domain and is_disposable(email_domain))
    ):
        return profile
    return _profile_after(profile, {})


@lru_cache(maxsize=1024)  # ~6 kB an entry as measured: recent leads' traits only
def _profile_after_cached(profile: LeadProfile, traits_json: bytes) -> LeadProfile:
    return _profile_after(profile, orjson.loads(traits_json))


def _profile_after(profile: LeadProfile, traits: Mapping[str, Any]) -> LeadProfile:
    email = usable_email(traits.get("email")) or profile.email
    first = _text(traits, "firstName", "first_name")
    last = _text(traits, "lastName", "last_name")
    if not (first or last) and (full := _text(traits, "name")):
        # Split, each part may start like a formula again ("Lovelace, =cmd").
        first, last = map(_safe, normalize.split_name(full))
    title = _text(traits, "title", "jobTitle", "job_title") or profile.title
    country = _country(traits) or profile.country
    email_domain = normalize.domain_of_email(email) if email else None
    return LeadProfile(
        email=email,
        first_name=first or profile.first_name,
        last_name=last or profile.last_name,
        title=title,
        company=_company_name(traits) or profile.company,
        company_domain=email_company_domain(email)
        or _website_domain(traits)
        or profile.company_domain,
        phone=_phone(traits, country) or profile.phone,
        country=country,
        seniority=seniority_of(title),
        job_function=function_of(title),
        free_mail=bool(email_domain and is_free_mail(email_domain)),
        disposable_email=bool(email_domain and is_disposable(email_domain)),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return isinstance(value, int) and value == 1


def consent_after(
    consent: Consent,
    *,
    event: RawEvent,
    traits: Mapping[str, Any],
    suppression_reason: str | None,
) -> Consent:
    """Consent after an event. Withdrawals only: an opt-out is never granted back by an event
    (re-subscribing is a double-opt-in matter for the email tool, not for a tracking call)."""
    unsubscribe_event = (
        event.type == "track" and (event.event or "").strip().lower() in UNSUBSCRIBE_EVENTS
    )
    if (
        not traits
        and not suppression_reason
        and not unsubscribe_event
        and len(set(consent.reasons)) == len(consent.reasons)
    ):
        return consent  # the usual call: nothing withdrawn, nothing to look at or build
    added: list[str] = []
    if unsubscribe_event:
        added.append(f"event: {event.event}")
    for name in ("unsubscribed", "emailOptOut", "email_opt_out", "optOut", "opt_out"):
        if _truthy(traits.get(name)):
            added.append(f"traits.{name}")
    opt_out = consent.email_opt_out or bool(added) or bool(suppression_reason)
    suppressed = consent.suppressed or bool(suppression_reason)
    if suppression_reason:
        added.append(f"suppression list: {suppression_reason}")
    reasons = list(dict.fromkeys([*consent.reasons, *added]))
    if (opt_out, suppressed, reasons) == (
        consent.email_opt_out,
        consent.suppressed,
        consent.reasons,
    ):
        return consent  # the usual case: nothing withdrawn, nothing to build
    return Consent(email_opt_out=opt_out, suppressed=suppressed, reasons=reasons)


def company_domain_of(traits: Mapping[str, Any]) -> str | None:
    """The company domain an event's traits name (work email first, then website)."""
    return email_company_domain(usable_email(traits.get("email"))) or _website_domain(traits)


def folded_profile(survivor: LeadProfile, merged: LeadProfile) -> LeadProfile:
    """The survivor's profile after a merge: its own values win, gaps are filled from the merged
    lead's (so a merge never loses a fact, and never overrides the lead sales already knows)."""
    mine = survivor.model_dump()
    theirs = merged.model_dump()
    return LeadProfile.model_validate(
        {name: mine[name] if mine[name] not in (None, False) else theirs[name] for name in mine}
    )


def folded_consent(survivor: Consent, merged: Consent) -> Consent:
    """Opt-outs of either lead hold for the merged person."""
    return Consent(
        email_opt_out=survivor.email_opt_out or merged.email_opt_out,
        suppressed=survivor.suppressed or merged.suppressed,
        reasons=list(dict.fromkeys([*survivor.reasons, *merged.reasons])),
    )
