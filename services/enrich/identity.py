"""Identity resolution: which lead an event belongs to. Pure functions, no I/O, no clock.

A person is a lead with a stable `lead_id`. Identities point at leads: a userId, an email, an
anonymousId. An event's identities are considered in priority order userId > email >
anonymousId; the first one already known names the lead (the *primary*), and every identity of
the event is then attached to it:

- unknown identities are linked to the primary;
- an identity known to another lead means the two leads are one person: that lead is merged into
  the primary (an anonymous-only lead is *absorbed*: its kept history is re-attributed);
- an alias call joins its `previousId` (a userId or an anonymousId, Segment's meaning) to its
  userId: the lead the previousId names is the same person, so it is merged (or, when the userId
  is new, takes the userId), even if that gives one lead two userIds;
- guardrails: placeholder values ("null", "anonymous", "0", "test@test.com", ...) never identify
  anyone; a lead never gets a second, different userId except by an alias (two logged-in people
  on one browser stay two leads); at most `anonymous_ids_per_week` anonymousIds attach to one
  lead per week (a shared kiosk or a bot does not glue hundreds of visitors together). Each
  refusal is returned with its reason, for the caller to count and record.

A userId equal to one of the lead's own email addresses (once normalised as an email) is
*email-derived* (lead lists used to
carry the email as the userId; some websites do the same): it finds the lead like the email
does, but it is not the userId of the one-userId guardrail, so the website's own userId for the
same email later joins that lead instead of being refused. `LeadFacts.user_ids` holds only the
userIds that are not email-derived.
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
    """The event's usable identities, highest priority first, without duplicates. An alias
    call's previousId is not among them: see `previous_identities`.

    `traits`: the event's `traits_of`, when the caller has them already."""
    found: list[Identity] = []
    if user_id := usable_id(event.user_id):
        found.append(Identity(_USER_ID, user_id))
    if traits is None:
        traits = traits_of(event)
    if email := usable_email(traits.get("email")):
        found.append(Identity(_EMAIL, email))
    if anonymous_id := usable_id(event.anonymous_id):
        found.append(Identity(_ANONYMOUS_ID, anonymous_id))
    return found


def previous_identities(event: RawEvent) -> list[Identity]:
    """What an alias call's previousId may be (Segment: a userId or an anonymousId the person
    had), both to be looked up; `resolve` takes the one that is known. Empty for other calls
    and for a placeholder previousId."""
    if event.type != "alias" or (previous := usable_id(event.previous_id)) is None:
        return []
    return [Identity(_USER_ID, previous), Identity(_ANONYMOUS_ID, previous)]


def email_of(user_id: str) -> str | None:
    """The email address a userId is, normalised (`usable_email`), or None: what an
    email-derived userId is compared by, so that `Ada@Initech.com` is `ada@initech.com`."""
    return usable_email(user_id) if "@" in user_id else None


def is_identifying(identities: Sequence[Identity]) -> bool:
    return any(i.kind is _USER_ID or i.kind is _EMAIL for i in identities)


@dataclass(frozen=True)
class LeadFacts:
    """What resolution needs to know about an existing lead. `user_ids`: its userIds that are
    not email-derived (see the module docstring)."""

    lead_id: str
    user_ids: frozenset[str] = frozenset()
    identified: bool = False
    anonymous_ids_this_week: int = 0


class RefusalReason(StrEnum):
    """Why an identity was not linked (a label on the refusals metric, and in lead histories)."""

    ANOTHER_USER_ID = "another_user_id"
    ANONYMOUS_ID_LIMIT = "anonymous_id_limit"
    PLACEHOLDER_PREVIOUS_ID = "placeholder_previous_id"


REFUSAL_TEXTS = {
    RefusalReason.ANOTHER_USER_ID: "it belongs to a lead with another userId (two people, or"
    " one person with two accounts: an alias call joins them)",
    RefusalReason.ANONYMOUS_ID_LIMIT: "the lead reached its limit of anonymousIds per week (a"
    " shared device or a bot)",
    RefusalReason.PLACEHOLDER_PREVIOUS_ID: "the alias call's previousId is a placeholder that"
    " names nobody",
}


@dataclass(frozen=True)
class Refusal:
    """An identity of the event not linked to `Resolution.lead_id`. `other_lead_id`: the lead it
    stays with, when it is known to one."""

    identity: Identity
    reason: RefusalReason
    other_lead_id: str | None = None

    @property
    def text(self) -> str:
        """The reason in words, naming the identity's kind only (never its value: PII)."""
        return (
            f"{self.identity.kind.value.replace('_', ' ')} not linked: {REFUSAL_TEXTS[self.reason]}"
        )


@dataclass(frozen=True)
class Resolution:
    """`lead_id` owns the event. `merged`: other leads that are the same person, to fold into
    `lead_id` in this order; `absorbed_anonymous` says which of them were anonymous-only;
    `aliased` which of them the event's alias joined (the others shared an identity)."""

    lead_id: str
    created: bool
    new_links: tuple[Identity, ...] = ()
    merged: tuple[str, ...] = ()
    absorbed_anonymous: frozenset[str] = field(default_factory=frozenset)
    aliased: frozenset[str] = field(default_factory=frozenset)
    refused: tuple[Refusal, ...] = ()


def placeholder_alias_refusal(event: RawEvent) -> Refusal | None:
    """The refusal of an alias call whose previousId names nobody (a placeholder), else None."""
    if event.type != "alias" or event.previous_id is None or previous_identities(event):
        return None
    return Refusal(
        Identity(_ANONYMOUS_ID, event.previous_id.strip()),
        RefusalReason.PLACEHOLDER_PREVIOUS_ID,
    )


def resolve(
    identities: Sequence[Identity],
    *,
    known: Mapping[Identity, str],
    leads: Mapping[str, LeadFacts],
    new_lead_id: Callable[[], str],
    anonymous_ids_per_week: int,
    previous: Sequence[Identity] = (),
) -> Resolution | None:
    """Which lead an event belongs to, which identities to link, which leads to merge into it.

    `previous`: an alias call's `previous_identities`. The first one known is *joined*: its
    lead is the event's person whatever its userIds (an alias says so); when none is known, the
    previousId is linked as an anonymousId. None when the event has no usable identity (only
    placeholders): nobody can be named. Deterministic for the same inputs; `new_lead_id` is
    called only when a lead is created.
    """
    joined = next((i for i in previous if i in known and i not in identities), None)
    if previous and joined is None and previous[-1] not in identities:
        identities = [*identities, previous[-1]]  # unknown: an anonymousId, as before aliases
    if not identities and joined is None:
        return None
    if len(identities) == 1 and joined is None and identities[0].kind is not _USER_ID:
        owner = known.get(identities[0])
        if owner is not None:
            # Most calls: a returning visitor's page view or track, by one known anonymousId or
            # email. The general path below would find nothing to link, merge or refuse.
            return Resolution(lead_id=owner, created=False)
    event_user = next((i.value for i in identities if i.kind is _USER_ID), None)
    event_email = next((i.value for i in identities if i.kind is _EMAIL), None)
    if event_user is not None and event_email is not None and email_of(event_user) == event_email:
        event_user = None  # email-derived: it names whom the event's email names
    candidates = [*identities, joined] if joined is not None else identities

    def facts(lead_id: str) -> LeadFacts:
        return leads.get(lead_id) or LeadFacts(lead_id)

    # The primary: the lead of the first known identity that can take the event's userId.
    primary: str | None = None
    for identity in candidates:
        owner = known.get(identity)
        if owner is None:
            continue
        owner_facts = leads.get(owner)
        owner_users = owner_facts.user_ids if owner_facts is not None else frozenset()
        if identity == joined or event_user is None or not owner_users or event_user in owner_users:
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
    aliased: set[str] = set()
    refused: list[Refusal] = []
    for identity in candidates:
        owner = known.get(identity)
        if owner == primary or (owner is not None and owner in merged):
            continue
        if owner is None:
            if identity.kind is _ANONYMOUS_ID:
                if anonymous_count >= anonymous_ids_per_week:
                    refused.append(Refusal(identity, RefusalReason.ANONYMOUS_ID_LIMIT))
                    continue
                anonymous_count += 1
            links.append(identity)
            continue
        other = facts(owner)
        if (
            identity != joined
            and other.user_ids
            and user_ids
            and other.user_ids.isdisjoint(user_ids)
        ):
            refused.append(Refusal(identity, RefusalReason.ANOTHER_USER_ID, owner))
            continue
        if not other.identified:
            weight = max(1, other.anonymous_ids_this_week)
            if anonymous_count + weight > anonymous_ids_per_week:
                refused.append(Refusal(identity, RefusalReason.ANONYMOUS_ID_LIMIT, owner))
                continue
            anonymous_count += weight
            absorbed.add(owner)
        if identity == joined:
            aliased.add(owner)
        merged.append(owner)
        user_ids |= other.user_ids
    return Resolution(
        lead_id=primary,
        created=created,
        new_links=tuple(links),
        merged=tuple(merged),
        absorbed_anonymous=frozenset(absorbed),
        aliased=frozenset(aliased),
        refused=tuple(refused),
    )
