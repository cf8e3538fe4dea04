"""Identity resolution: which lead an event belongs to. Pure functions, no I/O, no clock.

A person is a lead with a stable `lead_id`. Identities point at leads: a userId, an email, an
anonymousId (an alias call's previousId counts as an anonymousId). An event's identities are
considered in priority order userId > email > anonymousId; the first one already known names the
lead (the *primary*), and every identity of the event is then attached to it:

- unknown identities are linked to the primary;
- an identity known to another lead means the two leads are one person: that lead is merged into
  the primary (an anonymous-only lead is *absorbed*: its kept history is re-attributed);
- guardrails: placeholder values ("null", "anonymous", "0", "test@test.com", ...) never identify
  anyone; a lead never gets a second, different userId (two logged-in people on one browser stay
  two leads); at most `anonymous_ids_per_week` anonymousIds attach to one lead per week (a shared
  kiosk or a bot does not glue hundreds of visitors together).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

from shared import normalize
from shared.contracts import RawEvent


class IdentityKind(StrEnum):
    USER_ID = "user_id"
    EMAIL = "email"
    ANONYMOUS_ID = "anonymous_id"


_USER_ID = IdentityKind.USER_ID  # module constants: an enum member lookup costs a call
_EMAIL = IdentityKind.EMAIL
_ANONYMOUS_ID = IdentityKind.ANONYMOUS_ID


class Identity(NamedTuple):
    """One identity of a person. A named tuple: built, hashed and compared in C (a batch makes
    and looks up several per event), ordered by kind then value."""

    kind: IdentityKind
    value: str


PLACEHOLDER_IDS = frozenset(
    {
        "",
        "null",
        "none",
        "nil",
        "nan",
        "undefined",
        "anonymous",
        "anon",
        "unknown",
        "0",
        "-1",
        "1",
        "n/a",
        "na",
        "[object object]",
        "guest",
        "user",
        "test",
        "false",
        "true",
        "00000000-0000-0000-0000-000000000000",
    }
)
PLACEHOLDER_EMAIL_LOCALS = frozenset(
    {
        "test",
        "testing",
        "tester",
        "example",
        "noreply",
        "no-reply",
        "donotreply",
        "null",
        "none",
        "nobody",
        "asdf",
        "qwerty",
        "foo",
        "bar",
        "foobar",
        "abc",
        "xxx",
        "a",
        "aa",
        "aaa",
        "user",
        "email",
        "fake",
    }
)
# Reserved for documentation and testing (RFC 2606 / 6761) or typed to get past a form.
PLACEHOLDER_EMAIL_DOMAINS = frozenset(
    {
        "test.com",
        "test.de",
        "example.com",
        "example.org",
        "example.net",
        "test",
        "example",
        "invalid",
        "localhost",
        "email.com",
        "domain.com",
        "mail.test",
        "asdf.com",
        "fake.com",
        "none.com",
        "noemail.com",
    }
)
_REPEATED = re.compile(r"^(.)\1*$")


def usable_id(value: object) -> str | None:
    """A trimmed userId / anonymousId, or None for a placeholder that identifies nobody."""
    if value is None:  # most calls: an event without userId or previousId
        return None
    if type(value) is str:
        return _usable_text_id(value)
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    stripped = str(value).strip()
    return None if stripped.lower() in PLACEHOLDER_IDS else stripped


@lru_cache(maxsize=8_192)  # a visitor's anonymousId comes with each of its calls
def _usable_text_id(value: str) -> str | None:
    stripped = value.strip()
    return None if stripped.lower() in PLACEHOLDER_IDS else stripped


def is_placeholder_email(address: str) -> bool:
    """Junk typed to get past a form: test@test.com, foo@example.org, aaa@aaa.com, x@localhost."""
    local, _, domain = address.rpartition("@")
    label = domain.split(".")[0]
    if domain in PLACEHOLDER_EMAIL_DOMAINS or domain.endswith((".test", ".example", ".invalid")):
        return True
    if local in PLACEHOLDER_EMAIL_LOCALS and (local == label or label in {"test", "example"}):
        return True
    return bool(_REPEATED.match(local) and _REPEATED.match(label))


def usable_email(value: Any) -> str | None:
    """The normalised address (shared.normalize.email), or None if invalid or a placeholder."""
    if not isinstance(value, str):
        return None
    return _usable_email(value)


@lru_cache(maxsize=65_536)  # validation is the costliest step per event; addresses repeat
def _usable_email(value: str) -> str | None:
    try:
        address = normalize.email(value)
    except normalize.InvalidValue:
        return None
    return None if is_placeholder_email(address) else address


def traits_of(event: RawEvent) -> dict[str, Any]:
    """The event's traits; some clients (rudder, analytics.js on track) send them in context."""
    context_traits = event.context.get("traits")
    if isinstance(context_traits, dict):
        return {**context_traits, **event.traits}
    return dict(event.traits)


def identities_of(event: RawEvent, traits: Mapping[str, Any] | None = None) -> list[Identity]:
    """The event's usable identities, highest priority first, without duplicates.

    `traits`: the event's `traits_of`, when the caller has them already."""
    found: list[Identity] = []
    if user_id := usable_id(event.user_id):
        found.append(Identity(_USER_ID, user_id))
    if traits is None:
        traits = traits_of(event)
    if email := usable_email(traits.get("email")):
        found.append(Identity(_EMAIL, email))
    for anonymous in (event.anonymous_id, event.previous_id):
        if (anonymous_id := usable_id(anonymous)) and (
            identity := Identity(_ANONYMOUS_ID, anonymous_id)
        ) not in found:
            found.append(identity)
    return found


def is_identifying(identities: Sequence[Identity]) -> bool:
    return any(i.kind is _USER_ID or i.kind is _EMAIL for i in identities)


@dataclass(frozen=True)
class LeadFacts:
    """What resolution needs to know about an existing lead."""

    lead_id: str
    user_ids: frozenset[str] = frozenset()
    identified: bool = False
    anonymous_ids_this_week: int = 0


@dataclass(frozen=True)
class Refusal:
    identity: Identity
    reason: str


@dataclass(frozen=True)
class Resolution:
    """`lead_id` owns the event. `merged`: other leads that are the same person, to fold into
    `lead_id` in this order; `absorbed_anonymous` says which of them were anonymous-only."""

    lead_id: str
    created: bool
    new_links: tuple[Identity, ...] = ()
    merged: tuple[str, ...] = ()
    absorbed_anonymous: frozenset[str] = field(default_factory=frozenset)
    refused: tuple[Refusal, ...] = ()


def resolve(
    identities: Sequence[Identity],
    *,
    known: Mapping[Identity, str],
    leads: Mapping[str, LeadFacts],
    new_lead_id: Callable[[], str],
    anonymous_ids_per_week: int,
) -> Resolution | None:
    """Which lead an event belongs to, which identities to link, which leads to merge into it.

    None when the event has no usable identity (only placeholders): nobody can be named.
    Deterministic for the same inputs; `new_lead_id` is called only when a lead is created.
    """
    if not identities:
        return None
    if len(identities) == 1 and identities[0].kind is not _USER_ID:
        owner = known.get(identities[0])
        if owner is not None:
            # Most calls: a returning visitor's page view or track, by one known anonymousId or
            # email. The general path below would find nothing to link, merge or refuse.
            return Resolution(lead_id=owner, created=False)
    event_user = next((i.value for i in identities if i.kind is _USER_ID), None)

    def facts(lead_id: str) -> LeadFacts:
        return leads.get(lead_id) or LeadFacts(lead_id)

    # The primary: the lead of the first known identity that can take the event's userId.
    primary: str | None = None
    for identity in identities:
        owner = known.get(identity)
        if owner is None:
            continue
        owner_facts = leads.get(owner)
        owner_users = owner_facts.user_ids if owner_facts is not None else frozenset()
        if event_user is None or not owner_users or owner_users == {event_user}:
            primary = owner
            break
    created = primary is None
    if primary is None:
        primary = new_lead_id()
    primary_facts = facts(primary)
    user_ids = set(primary_facts.user_ids)
    if event_user:
        user_ids.add(event_user)
    anonymous_count = primary_facts.anonymous_ids_this_week
    links: list[Identity] = []
    merged: list[str] = []
    absorbed: set[str] = set()
    refused: list[Refusal] = []
    for identity in identities:
        owner = known.get(identity)
        if owner == primary or (owner is not None and owner in merged):
            continue
        if owner is None:
            if identity.kind is _ANONYMOUS_ID:
                if anonymous_count >= anonymous_ids_per_week:
                    refused.append(Refusal(identity, "anonymous id limit per week reached"))
                    continue
                anonymous_count += 1
            links.append(identity)
            continue
        other = facts(owner)
        if other.user_ids and user_ids and other.user_ids != user_ids:
            refused.append(Refusal(identity, f"belongs to lead {owner} with another userId"))
            continue
        if not other.identified:
            weight = max(1, other.anonymous_ids_this_week)
            if anonymous_count + weight > anonymous_ids_per_week:
                refused.append(Refusal(identity, "anonymous id limit per week reached"))
                continue
            anonymous_count += weight
            absorbed.add(owner)
        merged.append(owner)
        user_ids |= other.user_ids
    return Resolution(
        lead_id=primary,
        created=created,
        new_links=tuple(links),
        merged=tuple(merged),
        absorbed_anonymous=frozenset(absorbed),
        refused=tuple(refused),
    )
