"""Normalising what people type into forms and spreadsheets.

One implementation for every service: ingest's lead-list import and enrich's trait normalisation
both call these, so an email or a phone number means the same thing everywhere.

Each function takes the raw value and returns the canonical form, or raises `InvalidValue`
whose message is a reason a person can act on ("invalid email 'bob@': ..."). Functions are pure:
no I/O, no lookups beyond the bundled libraries' data.
"""

from shared.normalize.contact import email, phone
from shared.normalize.errors import InvalidValue
from shared.normalize.formulas import FORMULA_STARTS, formula_safe
from shared.normalize.geography import country
from shared.normalize.names import split_name, text
from shared.normalize.web import domain_of_email, domain_of_website

__all__ = [
    "FORMULA_STARTS",
    "InvalidValue",
    "country",
    "domain_of_email",
    "domain_of_website",
    "email",
    "formula_safe",
    "phone",
    "split_name",
    "text",
]
