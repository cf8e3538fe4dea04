"""Job title -> seniority and function: pure, table-driven, English plus common French, German
and Spanish words. Titles are messy ("Sr. Software Engineer", "VP, Sales & BD", "Directeur
Commercial"); we look for words, most senior first, so "Assistant to the CEO" is not a CEO.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from shared.contracts.events_enriched import JobFunction, Seniority

_WORD = re.compile(r"[a-z0-9]+")

# Phrases that override everything else: someone assisting or studying is not senior.
_ASSISTANT = ("assistant to", "assistant of", "executive assistant", "ea to", "pa to")
_STUDENT = (
    "student",
    "intern",
    "internship",
    "trainee",
    "apprentice",
    "working student",
    "werkstudent",
    "praktikant",
    "stagiaire",
    "alternant",
    "becario",
    "pasante",
    "graduate student",
    "phd candidate",
)
_C_LEVEL_ACRONYMS = {
    "ceo",
    "cto",
    "cfo",
    "coo",
    "cmo",
    "cio",
    "cro",
    "cso",
    "cpo",
    "cdo",
    "ciso",
    "chro",
    "cco",
    "cxo",
}
# Who runs the company: C-level seniority, and the executive function.
_RUNS_THE_COMPANY = (
    "founder",
    "co founder",
    "cofounder",
    "owner",
    "president",
    "managing director",
)
_C_LEVEL = (
    "chief",
    *_RUNS_THE_COMPANY,
    "geschaftsfuhrer",
    "geschaeftsfuehrer",
    "pdg",
    "directeur general",
    "director general",
    "gerant",
)
_VP = (
    "vp",
    "svp",
    "evp",
    "avp",
    "vice president",
    "vice-president",
    "head of",
    "head",
    "vice presidente",
    "vicepresidente",
)
_DIRECTOR = (
    "director",
    "directeur",
    "directrice",
    "direktor",
    "directora",
    "leiter",
    "leiterin",
    "principal",
)
_MANAGER = (
    "manager",
    "lead",
    "team lead",
    "supervisor",
    "responsable",
    "gerente",
    "jefe",
    "jefa",
    "teamleiter",
    "coordinator",
    "chef de",
)

# (words, function), first hit wins; order puts specific words before generic ones.
_FUNCTIONS: tuple[tuple[tuple[str, ...], JobFunction], ...] = (
    (
        (
            "revenue",
            "sales",
            "account executive",
            "business development",
            "bdr",
            "sdr",
            "commercial",
            "vertrieb",
            "ventas",
            "ae",
            "account manager",
            "partnerships",
        ),
        "sales",
    ),
    (
        (
            "marketing",
            "growth",
            "demand gen",
            "demand generation",
            "brand",
            "seo",
            "content",
            "communications",
            "pr",
            "mercadotecnia",
            "marketing",
        ),
        "marketing",
    ),
    (("customer success", "customer support", "support", "service client"), "customer success"),
    (("product manager", "product owner", "product", "produit"), "product"),
    (("data scientist", "data engineer", "data", "analytics", "analyst", "bi"), "data"),
    (
        (
            "security",
            "it",
            "information technology",
            "systems administrator",
            "sysadmin",
            "helpdesk",
            "infrastructure",
            "network",
            "informatique",
            "cio",
            "ciso",
        ),
        "it",
    ),
    (
        (
            "engineer",
            "computer science",
            "engineering",
            "developer",
            "software",
            "devops",
            "sre",
            "architect",
            "programmer",
            "technology",
            "technical",
            "cto",
            "ingenieur",
            "ingeniero",
            "entwickler",
            "developpeur",
            "r d",
            "research",
        ),
        "engineering",
    ),
    (
        (
            "finance",
            "financial",
            "accounting",
            "accountant",
            "controller",
            "treasury",
            "cfo",
            "comptable",
            "finanzen",
            "finanzas",
            "tax",
            "payroll",
        ),
        "finance",
    ),
    (
        (
            "hr",
            "human resources",
            "people",
            "talent",
            "recruiter",
            "recruiting",
            "chro",
            "ressources humaines",
            "personal",
            "recursos humanos",
        ),
        "hr",
    ),
    (("legal", "counsel", "lawyer", "attorney", "compliance", "juridique"), "legal"),
    (("designer", "design", "ux", "ui"), "design"),
    (
        (
            "operations",
            "ops",
            "supply chain",
            "logistics",
            "procurement",
            "coo",
            "operaciones",
            "betrieb",
        ),
        "operations",
    ),
    (("teacher", "professor", "lecturer", "education", "researcher"), "education"),
    (
        (
            "ceo",
            *_RUNS_THE_COMPANY,
            "general manager",
            "pdg",
            "geschaftsfuhrer",
            "directeur general",
        ),
        "executive",
    ),
)
_FUNCTION_ACRONYMS = {
    "cmo": "marketing",
    "cro": "sales",
    "cpo": "product",
    "cdo": "data",
    "cco": "customer success",
}


def _words(title: str) -> str:
    """' word word ' form: lower-case ASCII words separated by single spaces, padded."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return " " + " ".join(_WORD.findall(ascii_title.lower())) + " "


def _has(words: str, phrases: tuple[str, ...] | set[str]) -> bool:
    return any(f" {_words(p).strip()} " in words for p in phrases)


@lru_cache(maxsize=16_384)  # titles repeat: a lead's title is re-read on every event
def seniority_of(title: str | None) -> Seniority | None:
    """The seniority a title states; None when there is no title. Anything with a title that
    names no rank is an individual contributor."""
    if not title or not title.strip():
        return None
    words = _words(title)
    if _has(words, _STUDENT):
        return "student/intern"
    if _has(words, _ASSISTANT):
        return "individual contributor"
    # "Vice President" contains "president": the VP check below must win for it.
    vice = _has(words, ("vice president", "vice-president", "vice presidente"))
    if not vice and (_has(words, _C_LEVEL_ACRONYMS) or _has(words, _C_LEVEL)):
        return "c-level"
    if _has(words, _VP):
        return "vp"
    if _has(words, _DIRECTOR):
        return "director"
    if _has(words, _MANAGER):
        return "manager"
    return "individual contributor"


@lru_cache(maxsize=16_384)
def function_of(title: str | None) -> JobFunction | None:
    """The business function a title belongs to; None without a title, "other" when unknown."""
    if not title or not title.strip():
        return None
    words = _words(title)
    for acronym, function in _FUNCTION_ACRONYMS.items():
        if f" {acronym} " in words:
            return function  # type: ignore[return-value]
    for phrases, function in _FUNCTIONS:
        if _has(words, phrases):
            return function
    return "other"
