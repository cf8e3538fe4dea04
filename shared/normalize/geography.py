"""Countries as ISO 3166-1 alpha-2 codes."""

from __future__ import annotations

from functools import lru_cache

import pycountry

from shared.normalize.errors import InvalidValue
from shared.normalize.names import text

# What people write that ISO does not list (ISO: GB, US, ...). Keys are lower-case.
_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "great britain": "GB",
    "britain": "GB",
    "usa": "US",
    "u.s.a.": "US",
    "u.s.": "US",
    "us": "US",
    "america": "US",
    "united states of america": "US",
    "russia": "RU",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "iran": "IR",
    "vietnam": "VN",
    "czech republic": "CZ",
    "holland": "NL",
    "the netherlands": "NL",
    "deutschland": "DE",
    "españa": "ES",
    "espana": "ES",
    "schweiz": "CH",
    "suisse": "CH",
    "österreich": "AT",
    "osterreich": "AT",
    "türkiye": "TR",
    "turkey": "TR",
    "uae": "AE",
    "ivory coast": "CI",
    "taiwan": "TW",
    "bolivia": "BO",
    "venezuela": "VE",
    "tanzania": "TZ",
    "syria": "SY",
    "laos": "LA",
    "moldova": "MD",
}


def country(value: str) -> str:
    """ISO alpha-2 ("DE") from a code (alpha-2/alpha-3), an English name or a common alias."""
    cleaned = text(value)
    if cleaned is None:
        raise InvalidValue("country", value, "empty")
    code = _lookup(cleaned.lower())
    if code is None:
        raise InvalidValue("country", value, "not a known country name or ISO code")
    return code


@lru_cache(maxsize=4096)
def _lookup(key: str) -> str | None:
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        found = pycountry.countries.lookup(key)
    except LookupError:
        return None
    return str(found.alpha_2)
