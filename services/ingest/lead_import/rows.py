"""One lead-list row to one clean lead: trimmed, validated, reformatted, formula-safe.

Pure: no I/O. The normalisers are the shared ones (`shared.normalize`), so an email or phone
number imported here means the same as one enrich normalises from a tracking call.

Formula safety (CSV/formula injection): a spreadsheet evaluates a cell that starts with `=`,
`+`, `-` or `@` (and tab or carriage return) when a list is opened or exported again. Every
free-text value that starts with one of these is stored as text by prefixing an apostrophe
(`'=HYPERLINK(...)`), the OWASP recommendation: spreadsheets show such a cell as the literal text
and hide the apostrophe; nothing downstream in leadflow evaluates traits either way. Two fields
are exempt because they are validated into a fixed shape: a phone is E.164 (`+` then digits
only), and an email is refused if it starts with a formula character (an address like
`=cmd@x.io` is syntactically valid but no real lead has one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.normalize import InvalidValue, country, email, phone, split_name, text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]\d+(\.\d+)?")
MAX_ID_LENGTH = 200  # events.raw's limit on userId


class RowRejected(ValueError):
    """A row that cannot become a lead; `str(exc)` is the reason (without the row number)."""


@dataclass(frozen=True)
class Lead:
    """A valid row: its normalised email (the merge key), the userId its event will carry and
    its traits (Segment identify trait names, empty values left out)."""

    email: str
    user_id: str | None
    traits: dict[str, Any]


def formula_safe(value: str) -> str:
    """The value as text a spreadsheet will not evaluate (see the module docstring). A plain
    signed number ("-5", "+3.25") is left alone: a spreadsheet reads it as that number."""
    if value.startswith(FORMULA_STARTS) and not _SIGNED_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _safe_value(value: Any) -> Any:
    """Extra traits: text trimmed and formula-safe (also inside NDJSON objects and lists);
    numbers and booleans as they are."""
    if isinstance(value, str):
        cleaned = text(value)
        return formula_safe(cleaned) if cleaned is not None else None
    if isinstance(value, dict):
        inner = {str(k): _safe_value(v) for k, v in value.items()}
        return {k: v for k, v in inner.items() if v is not None} or None
    if isinstance(value, list):
        return [_safe_value(v) for v in value]
    return value


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def normalise_row(values: Mapping[str, str | None], extras: Mapping[str, Any]) -> Lead:
    """A lead from a row's mapped values (field -> raw cell) and extra columns (trait -> raw).

    Raises `RowRejected` for a missing or invalid email, an invalid phone or country, or a
    userId that is too long or starts like a formula. Names: a full name fills firstName/lastName when those columns are empty;
    given first/last names are kept as they are. Phones without an international prefix take
    the row's country as their region.
    """
    raw_email = text(values.get("email"))
    if raw_email is None:
        raise RowRejected("missing email")
    if raw_email.startswith(FORMULA_STARTS):
        raise RowRejected(f"invalid email {_short(raw_email)}: starts like a spreadsheet formula")
    try:
        address = email(raw_email)
    except InvalidValue as exc:
        raise RowRejected(str(exc)) from None
    if len(address) > MAX_ID_LENGTH:
        raise RowRejected(f"email longer than {MAX_ID_LENGTH} characters")

    traits: dict[str, Any] = {}
    for trait, raw in extras.items():
        cleaned = _safe_value(raw)
        if cleaned is not None:
            traits[trait] = cleaned

    traits["email"] = address
    country_code = None
    if (raw_country := text(values.get("country"))) is not None:
        try:
            country_code = country(raw_country)
        except InvalidValue as exc:
            raise RowRejected(str(exc)) from None
        traits["country"] = country_code
    if (raw_phone := text(values.get("phone"))) is not None:
        try:
            traits["phone"] = phone(raw_phone, country_code)
        except InvalidValue as exc:
            raise RowRejected(str(exc)) from None

    first, last = text(values.get("firstName")), text(values.get("lastName"))
    full = text(values.get("name"))
    if full is not None and first is None and last is None:
        first, last = split_name(full)
    for trait, value in (
        ("firstName", first),
        ("lastName", last),
        ("name", full),
        ("company", text(values.get("company"))),
        ("title", text(values.get("title"))),
        ("website", text(values.get("website"))),
    ):
        if value is not None:
            traits[trait] = formula_safe(value)

    user_id = text(values.get("userId"))
    if user_id is not None and len(user_id) > MAX_ID_LENGTH:
        raise RowRejected(f"userId longer than {MAX_ID_LENGTH} characters")
    if user_id is not None and user_id.startswith(FORMULA_STARTS):
        # An id must stay verbatim to match, so it cannot be made safe by prefixing.
        raise RowRejected(f"invalid userId {_short(user_id)}: starts like a spreadsheet formula")
    return Lead(email=address, user_id=user_id, traits=traits)
