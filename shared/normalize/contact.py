"""Email addresses and phone numbers."""

from __future__ import annotations

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from shared.normalize.errors import InvalidValue

_MAX_EMAIL = 254  # RFC 5321 path limit


def email(value: str) -> str:
    """The address trimmed and lower-cased, if it is syntactically valid.

    Lower-casing the local part is not RFC-exact, but no mail provider a lead uses treats
    "Bob@" and "bob@" as two people, and matching identities needs one spelling. No DNS
    lookup: deliverability is a vendor's job, and normalising must stay pure and fast.
    """
    candidate = value.strip().strip("<>").strip().lower()
    if not candidate:
        raise InvalidValue("email", value, "empty")
    if len(candidate) > _MAX_EMAIL:
        raise InvalidValue("email", value, f"longer than {_MAX_EMAIL} characters")
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidValue("email", value, str(exc).rstrip(".")) from None
    return checked.normalized.lower()


def phone(value: str, default_region: str | None = None) -> str:
    """E.164 ("+442071838750") from any common spelling.

    Numbers without an international prefix need `default_region` (ISO alpha-2, e.g. the
    lead's country); without one they are refused rather than guessed.
    """
    candidate = value.strip()
    if not candidate:
        raise InvalidValue("phone", value, "empty")
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        parsed = phonenumbers.parse(candidate, default_region.upper() if default_region else None)
    except phonenumbers.NumberParseException as exc:
        reason = (
            "no country code and no country to assume"
            if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
            else str(exc.args[0] if exc.args else exc).rstrip(".").lower()
        )
        raise InvalidValue("phone", value, reason) from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidValue("phone", value, "not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
