"""One lead-list row to one clean lead: trimmed, validated, reformatted, formula-safe.

A row is refused only when it identifies no one: its email is missing or invalid, or its userId
(an identity too) is unusable. A bad optional value (a phone "555", a country "Atlantis") costs
that value, not the lead: it is left out and named in `Lead.warnings` for the import report.

Pure: no I/O. The normalisers are the shared ones (`shared.normalize`), so an email or phone
number imported here means the same as one enrich normalises from a tracking call.

Formula safety (CSV/formula injection): every free-text value that starts like a spreadsheet
formula is stored as text with a leading apostrophe (`shared.normalize.formula_safe`, the rule
enrich applies to a tracking call's traits too); nothing downstream in leadflow evaluates traits
either way. Two fields
are exempt because they are validated into a fixed shape: a phone is E.164 (`+` then digits
only), and an email is refused if it starts with a formula character (an address like
`=cmd@x.io` is syntactically valid but no real lead has one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.normalize import (
    FORMULA_STARTS,
    InvalidValue,
    country,
    email,
    formula_safe,
    phone,
    split_name,
    text,
)

__all__ = ["Lead", "RowRejected", "formula_safe", "normalise_row"]

MAX_ID_LENGTH = 200  # events.raw's limit on userId
# The fields that say who the lead is: a bad value refuses the row, any other bad value is dropped.
_IDENTITY_FIELDS = frozenset({"email", "userId"})


class RowRejected(ValueError):
    """A row that cannot become a lead; `str(exc)` is the reason (without the row number)."""


@dataclass(frozen=True)
class Lead:
    """A valid row: its normalised email (the merge key), the userId its event will carry (the
    list's user id column; None without one) and its traits (Segment identify trait names,
    empty values left out).

    `warnings`: one line per optional value that failed its check and was left out ("phone
    '555' dropped: not a valid number"), quoting the value like a rejection does; for the
    import report only (never logged). Not merged or stored: a lead read back from the spool
    has none, its rows' warnings were reported as they were read.
    """

    email: str
    user_id: str | None
    traits: dict[str, Any]
    warnings: tuple[str, ...] = ()


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


class _NotText(ValueError):
    """A mapped NDJSON value that is neither text nor a number (an object, a list, a boolean)."""


def _cell_text(value: object) -> str | None:
    """A mapped cell as trimmed text: CSV cells are text already, an NDJSON number is written
    as text; blank -> None."""
    if value is None or isinstance(value, str):
        return text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _NotText(f"must be text, not {type(value).__name__}")


def normalise_row(values: Mapping[str, object], extras: Mapping[str, Any]) -> Lead:
    """A lead from a row's mapped values (field -> raw cell) and extra columns (trait -> raw).

    Raises `RowRejected` only for a row that identifies no one: a missing or invalid email, or
    a userId that is not text, too long or starts like a formula (an id must stay verbatim to
    match, so it cannot be repaired). Any other mapped value that fails its check (an invalid
    phone or country, an NDJSON object where text belongs) is left out of the traits and named
    in `Lead.warnings`. Names: a full name fills firstName/lastName when those columns are
    empty; given first/last names are kept as they are. Phones without an international prefix
    take the row's country as their region (none when the country was dropped).
    """
    try:
        raw_email = _cell_text(values.get("email"))
    except _NotText as exc:
        raise RowRejected(f"email {exc}") from None
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
    warnings: list[str] = []
    cells: dict[str, str | None] = {}
    for field, value in values.items():
        if field in _IDENTITY_FIELDS:
            continue
        try:
            cells[field] = _cell_text(value)
        except _NotText as exc:
            warnings.append(f"{field} dropped: {exc}")

    country_code = None
    if (raw_country := cells.get("country")) is not None:
        try:
            country_code = country(raw_country)
        except InvalidValue as exc:
            warnings.append(_dropped(exc))
        else:
            traits["country"] = country_code
    if (raw_phone := cells.get("phone")) is not None:
        try:
            traits["phone"] = phone(raw_phone, country_code)
        except InvalidValue as exc:
            warnings.append(_dropped(exc))

    first, last = cells.get("firstName"), cells.get("lastName")
    full = cells.get("name")
    if full is not None and first is None and last is None:
        first, last = split_name(full)
    for trait, value in (
        ("firstName", first),
        ("lastName", last),
        ("name", full),
        ("company", cells.get("company")),
        ("title", cells.get("title")),
        ("website", cells.get("website")),
    ):
        if value is not None:
            traits[trait] = formula_safe(value)

    try:
        user_id = _cell_text(values.get("userId"))
    except _NotText as exc:
        raise RowRejected(f"userId {exc}") from None
    if user_id is not None and len(user_id) > MAX_ID_LENGTH:
        raise RowRejected(f"userId longer than {MAX_ID_LENGTH} characters")
    if user_id is not None and user_id.startswith(FORMULA_STARTS):
        # An id must stay verbatim to match, so it cannot be made safe by prefixing.
        raise RowRejected(f"invalid userId {_short(user_id)}: starts like a spreadsheet formula")
    return Lead(email=address, user_id=user_id, traits=traits, warnings=tuple(warnings))


def _dropped(exc: InvalidValue) -> str:
    """A dropped value's warning, "phone '555' dropped: not a valid number"."""
    return f"{exc.kind} {_short(exc.value)} dropped: {exc.why}"
