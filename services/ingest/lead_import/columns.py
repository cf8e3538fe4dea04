"""Which column of a lead list holds which lead trait: given by the uploader, or guessed.

Pure: no I/O. Fields are Segment's identify trait names (`email`, `firstName`, ...), so a mapped
column lands in `traits` under the name every consumer already reads.

Columns that map to no field are carried as extra traits under their header text (trimmed), so
nothing a list owner put in the file is silently lost; a column is ignored (and the report names
it) only when its header is empty, when the uploader mapped it to nothing, or when its field is
already taken by an earlier column (two "Email" columns: the first one wins).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# field -> normalised header spellings (lower-case, letters and digits only).
_SPELLINGS: dict[str, frozenset[str]] = {
    "email": frozenset(
        {"email", "emailaddress", "mail", "emailid", "workemail", "businessemail", "emails"}
    ),
    "firstName": frozenset({"firstname", "first", "givenname", "forename", "fname"}),
    "lastName": frozenset({"lastname", "last", "surname", "familyname", "lname"}),
    "name": frozenset({"name", "fullname", "contactname", "contact", "leadname", "person"}),
    "company": frozenset(
        {
            "company",
            "companyname",
            "organization",
            "organisation",
            "org",
            "account",
            "accountname",
            "employer",
        }
    ),
    "title": frozenset({"title", "jobtitle", "position", "role", "jobrole", "designation"}),
    "phone": frozenset(
        {
            "phone",
            "phonenumber",
            "mobile",
            "mobilephone",
            "mobilenumber",
            "cell",
            "cellphone",
            "telephone",
            "tel",
            "workphone",
            "businessphone",
        }
    ),
    "country": frozenset({"country", "countrycode", "countryname", "nation"}),
    "website": frozenset(
        {"website", "web", "url", "companywebsite", "websiteurl", "homepage", "domain"}
    ),
    "userId": frozenset({"userid", "externalid", "leadid", "contactid"}),
}

FIELDS: tuple[str, ...] = tuple(_SPELLINGS)
"""Every field a column can be mapped to."""

MAX_COLUMNS = 500


class ColumnProblem(ValueError):
    """The columns cannot be imported as given (no email column, a mapping naming an unknown
    header or field, too many columns). `str(exc)` is the reason for the uploader."""


class NoEmailColumn(ColumnProblem):
    """No column holds the email, the identity every imported lead needs."""


@dataclass(frozen=True)
class ColumnPlan:
    """Where each column's value goes, by column position."""

    headers: tuple[str, ...]
    fields: Mapping[int, str]
    """column index -> field name (one of FIELDS); each field at most once."""
    extras: Mapping[int, str]
    """column index -> extra trait name (the header text)."""
    ignored: tuple[str, ...] = field(default=())
    """Human-readable notes on ignored columns, for the report."""

    def described(self) -> dict[str, str]:
        """header -> where it goes, for the report."""
        described = {self.headers[i]: name for i, name in self.fields.items()}
        described |= {self.headers[i]: f"extra trait '{name}'" for i, name in self.extras.items()}
        return described


def _spelling(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def guess_field(header: str) -> str | None:
    """The field a header names ("E-mail" -> "email", "Job Title" -> "title"), or None."""
    key = _spelling(header)
    for name, spellings in _SPELLINGS.items():
        if key in spellings:
            return name
    return None


def plan_columns(
    headers: Sequence[str], *, mapping: Mapping[str, str | None] | None = None
) -> ColumnPlan:
    """Map columns to fields: `mapping` (header -> field, or None to ignore the column) first,
    then guesses from the header names; the rest become extra traits.

    Raises `ColumnProblem` when there are more than MAX_COLUMNS columns, when `mapping` names a
    header not in the file or a field not in FIELDS, or when no column holds the email (the
    identity every imported lead needs).
    """
    if len(headers) > MAX_COLUMNS:
        raise ColumnProblem(
            f"the header has {len(headers)} columns; at most {MAX_COLUMNS} are accepted"
        )
    given = dict(mapping or {})
    _check_mapping(given, headers)
    fields: dict[int, str] = {}
    extras: dict[int, str] = {}
    ignored: list[str] = []
    taken: dict[str, str] = {}  # field -> header that holds it
    # Given mappings claim their fields before any guess can.
    for index, header in enumerate(headers):
        if given.get(header):
            target = str(given[header])
            if target in taken:
                raise ColumnProblem(
                    f"mapping puts both {taken[target]!r} and {header!r} into {target!r}"
                )
            fields[index] = target
            taken[target] = header
    for index, header in enumerate(headers):
        if index in fields:
            continue
        if header in given:  # mapped to nothing on purpose
            ignored.append(f"{header!r}: mapped to nothing")
            continue
        if not header:
            ignored.append(f"column {index + 1}: no header")
            continue
        guessed = guess_field(header)
        if guessed is not None and guessed in taken:
            ignored.append(f"{header!r}: {guessed} already comes from {taken[guessed]!r}")
        elif guessed is not None:
            fields[index] = guessed
            taken[guessed] = header
        elif header in extras.values():
            ignored.append(f"{header!r}: a column with the same header comes earlier")
        else:
            extras[index] = header
    if "email" not in taken:
        shown = ", ".join(repr(h) for h in headers[:20])
        raise NoEmailColumn(
            f"no email column among the headers ({shown}); name one 'Email' or pass "
            'mapping={"<your header>": "email"}'
        )
    return ColumnPlan(headers=tuple(headers), fields=fields, extras=extras, ignored=tuple(ignored))


def _check_mapping(given: Mapping[str, str | None], headers: Sequence[str]) -> None:
    for header, target in given.items():
        if header not in headers:
            raise ColumnProblem(f"mapping names {header!r}, which is not a header of the file")
        if target and target not in FIELDS:
            raise ColumnProblem(
                f"mapping puts {header!r} into {target!r}; fields are: {', '.join(FIELDS)}"
            )
