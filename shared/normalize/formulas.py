"""Text that a spreadsheet would evaluate as a formula (CSV/formula injection).

A spreadsheet evaluates a cell that starts with `=`, `+`, `-` or `@` (and tab or carriage
return) when a list is opened or exported again. Free text that starts with one of these is
stored as text by prefixing an apostrophe (`'=HYPERLINK(...)`), the OWASP recommendation:
spreadsheets show such a cell as the literal text and hide the apostrophe. One rule for every
way a value arrives (a lead-list cell in ingest, an identify call's trait in enrich), so a
lead's name is the same whichever way it came, and what sales exports from routing decisions
is safe to open.
"""

from __future__ import annotations

import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"[+-]\d+(\.\d+)?")


def formula_safe(value: str) -> str:
    """The value as text a spreadsheet will not evaluate. A plain signed number ("-5",
    "+3.25") is left alone: a spreadsheet reads it as that number. Idempotent: a safe value
    starts with an apostrophe, which no formula does."""
    if value.startswith(FORMULA_STARTS) and not _SIGNED_NUMBER.fullmatch(value):
        return "'" + value
    return value
