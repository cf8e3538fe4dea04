"""Erasure requests, the pure part: what an identifier is, and what a request's status is.

An erasure request names a person by one identifier: an email, a userId or an anonymousId. It is
normalised exactly as identity resolution keeps identities (`identity.usable_email`,
`identity.usable_id`), so that `Ada@Initech.COM ` finds the lead that `ada@initech.com` made and
its keyed hash matches the one the do-not-track check computes for later events.

Status: each service that keeps leads (enrich itself, and the `erasure_reporters`) has its part
`pending` until it reports, then `complete`. The request is `pending` while enrich has not
resolved it, `partial` while some services have not reported, `complete` when all have (or
nothing was found: enrich's part is then the whole of it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from services.enrich.identity import Identity, IdentityKind, usable_email, usable_id

MAX_IDENTIFIER_LENGTH = 320  # the longest email address; ids are shorter in practice
MAX_REASON_LENGTH = 500

Status = Literal["pending", "partial", "complete"]


class BadRequest(ValueError):
    """An erasure request that cannot be taken; `str()` is the reason, for a 400 or the CLI."""


def identifier_of(kind: str, value: str) -> Identity:
    """The identity a request names, normalised, or BadRequest saying why it is not one."""
    try:
        identity_kind = IdentityKind(kind)
    except ValueError:
        raise BadRequest(
            f"identifier kind {kind!r}: expected one of email, user_id, anonymous_id"
        ) from None
    if not value.strip():
        raise BadRequest(f"the {kind} is empty")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise BadRequest(f"the {kind} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    if identity_kind is IdentityKind.EMAIL:
        if (email := usable_email(value)) is None:
            raise BadRequest(
                "the email is not a valid address (or a placeholder such as test@test.com)"
            )
        return Identity(identity_kind, email)
    if (plain := usable_id(value)) is None:
        raise BadRequest(f"the {kind} is a placeholder that identifies nobody (e.g. 'null', '0')")
    return Identity(identity_kind, plain)


def checked_reason(reason: str, identity: Identity) -> str:
    """The reason as given, trimmed; BadRequest if it is empty, too long, or names the person
    (the audit keeps the reason and must hold no personal data)."""
    reason = reason.strip()
    if not reason:
        raise BadRequest("a reason is required (e.g. 'GDPR art. 17 request, ticket 4411')")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadRequest(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    if identity.value.lower() in reason.lower() or "@" in reason:
        raise BadRequest(
            "the reason must not contain the identifier or an email address: the audit log "
            "keeps the reason and holds no personal data"
        )
    return reason


@dataclass(frozen=True)
class ServicePart:
    service: str
    status: Literal["pending", "complete"]


def status_of(*, resolved: bool, parts: Iterable[ServicePart]) -> Status:
    """The request's status from its parts (see the module doc)."""
    if not resolved:
        return "pending"
    return "complete" if all(part.status == "complete" for part in parts) else "partial"
