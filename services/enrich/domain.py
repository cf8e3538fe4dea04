"""Identity resolution and trait normalisation: pure functions, no I/O, no clock.

A person is a lead with a stable `lead_id`. Identities point at leads: a userId, an email, an
anonymousId. An event's identities are looked at in priority order userId > email > anonymousId;
the first one already known names the lead, and every identity of the event not yet known is
linked to it. Placeholder values ("null", "anonymous", "test@test.com", ...) never identify
anyone, so they can never merge two people.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.contracts import LeadProfile, RawEvent


class IdentityKind(StrEnum):
    USER_ID = "user_id"
    EMAIL = "email"
    ANONYMOUS_ID = "anonymous_id"


@dataclass(frozen=True, order=True)
class Identity:
    kind: IdentityKind
    value: str


PLACEHOLDER_IDS = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "undefined",
        "anonymous",
        "unknown",
        "0",
        "-1",
        "n/a",
        "na",
        "[object object]",
        "guest",
        "user",
        "test",
    }
)
PLACEHOLDER_EMAIL_LOCALS = frozenset({"test", "example", "noreply", "no-reply", "null", "none"})
PLACEHOLDER_EMAIL_DOMAINS = frozenset({"test.com", "example.com", "example.org", "example.net"})
FREE_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "proton.me",
        "protonmail.com",
        "yandex.ru",
        "mail.ru",
        "qq.com",
        "163.com",
        "mailinator.com",
    }
)
_EMAIL = re.compile(r"^[a-z0-9._%+'-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")


def normalise_email(value: Any) -> str | None:
    """Lower-cased, trimmed email, or None when it is not a plausible, real address."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if not _EMAIL.match(email):
        return None
    local, _, domain = email.partition("@")
    if local in PLACEHOLDER_EMAIL_LOCALS and domain in PLACEHOLDER_EMAIL_DOMAINS:
        return None
    return email


def normalise_id(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return None if stripped.lower() in PLACEHOLDER_IDS else stripped


def identities_of(event: RawEvent) -> list[Identity]:
    """The event's usable identities, highest priority first."""
    found: list[Identity] = []
    if user_id := normalise_id(event.user_id):
        found.append(Identity(IdentityKind.USER_ID, user_id))
    if email := normalise_email(event.traits.get("email")):
        found.append(Identity(IdentityKind.EMAIL, email))
    if anonymous_id := normalise_id(event.anonymous_id):
        found.append(Identity(IdentityKind.ANONYMOUS_ID, anonymous_id))
    return found


@dataclass(frozen=True)
class Resolution:
    lead_id: str
    new_links: tuple[Identity, ...]
    created: bool


def resolve_lead(
    identities: Sequence[Identity],
    *,
    known: Mapping[Identity, str],
    new_lead_id: Callable[[], str],
) -> Resolution | None:
    """Which lead an event belongs to, and which of its identities to link to that lead.

    None when the event has no usable identity at all (only placeholders): it cannot be
    attributed to anyone. Two known identities that point at different leads are not merged
    here: the highest-priority one wins and the other keeps its lead.
    """
    if not identities:
        return None
    for identity in identities:
        if identity in known:
            lead_id = known[identity]
            links = tuple(i for i in identities if i not in known)
            return Resolution(lead_id=lead_id, new_links=links, created=False)
    return Resolution(lead_id=new_lead_id(), new_links=tuple(identities), created=True)


def is_identified(identities: Sequence[Identity]) -> bool:
    return any(i.kind in (IdentityKind.USER_ID, IdentityKind.EMAIL) for i in identities)


def company_domain(email: str | None) -> str | None:
    """The company's domain from a work email; None for free-mail addresses."""
    if not email:
        return None
    domain = email.rpartition("@")[2]
    return None if domain in FREE_MAIL_DOMAINS else domain


def _text(traits: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())
    return None


def merge_profile(profile: LeadProfile, traits: Mapping[str, Any]) -> LeadProfile:
    """The profile after an event's traits: a trait present overrides, one absent keeps."""
    email = normalise_email(traits.get("email")) or profile.email
    first = _text(traits, "firstName", "first_name")
    last = _text(traits, "lastName", "last_name")
    full = _text(traits, "name")
    if full and not (first or last):
        first, _, last_part = full.partition(" ")
        last = last_part or None
    return LeadProfile(
        email=email,
        first_name=first or profile.first_name,
        last_name=last or profile.last_name,
        title=_text(traits, "title", "jobTitle", "job_title") or profile.title,
        company=_company_name(traits) or profile.company,
        company_domain=company_domain(email) or profile.company_domain,
    )


def _company_name(traits: Mapping[str, Any]) -> str | None:
    company = traits.get("company")
    if isinstance(company, dict):
        return _text(company, "name")
    return _text(traits, "company", "companyName", "company_name")


def opts_out(event: RawEvent) -> bool:
    """Does this event withdraw email consent? (an `Unsubscribed` track or the trait)."""
    if event.type == "track" and (event.event or "").strip().lower() in {
        "unsubscribed",
        "email unsubscribed",
    }:
        return True
    return event.traits.get("unsubscribed") is True
