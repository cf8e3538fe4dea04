"""Free text and person names."""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")
# Honorifics and post-nominals that are not part of a first or last name.
_PREFIXES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "dame"})
_SUFFIXES = frozenset({"jr", "sr", "ii", "iii", "iv", "phd", "md", "mba", "esq"})


def text(value: str | None) -> str | None:
    """Trimmed, inner whitespace collapsed to one space; empty or blank -> None."""
    if value is None:
        return None
    cleaned = _SPACES.sub(" ", value).strip()
    return cleaned or None


def split_name(full: str | None) -> tuple[str | None, str | None]:
    """(first, last) from a full name as people write it.

    "Ada Lovelace" -> ("Ada", "Lovelace"); "Lovelace, Ada" -> ("Ada", "Lovelace");
    "Dr. Jean-Luc de la Tour Jr." -> ("Jean-Luc", "de la Tour"); one word -> (word, None).
    Everything after the first given name is the last name, so particles (van, de, da) stay
    with it; middle names are rare in lead lists and usually wanted in the last name field.
    """
    cleaned = text(full)
    if cleaned is None:
        return None, None
    if "," in cleaned:
        last, _, first = cleaned.partition(",")
        return text(first), text(last)
    words = cleaned.split(" ")
    while len(words) > 1 and _bare(words[0]) in _PREFIXES:
        words.pop(0)
    while len(words) > 1 and _bare(words[-1]) in _SUFFIXES:
        words.pop()
    if len(words) == 1:
        return words[0], None
    return words[0], " ".join(words[1:])


def _bare(word: str) -> str:
    return word.rstrip(".,").lower()
