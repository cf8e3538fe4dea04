"""Lead-to-account matching: pure, in memory. Accounts are few (thousands) and change rarely, so
the service holds an `AccountIndex` built from its table and refreshed periodically; a match is
then a dictionary lookup or one rapidfuzz pass, never a query.

Order of evidence: email domain (strong), website domain (strong), equal normalised company name
(strong), fuzzy company name at or above the threshold (weak). Ties (several accounts with one
domain or equally good names) are broken deterministically: customers before targets, then the
smallest account_id.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from rapidfuzz import fuzz, process

from shared.contracts import AccountMatch

AccountType = Literal["customer", "target"]

# Legal forms and filler words that do not tell two companies apart.
LEGAL_SUFFIXES = frozenset(
    {
        "inc", "incorporated", "corp", "corporation", "co", "company", "ltd", "limited", "llc",
        "llp", "lp", "plc", "gmbh", "ag", "kg", "se", "sa", "sas", "sarl", "sl", "srl", "spa",
        "bv", "nv", "oy", "ab", "as", "asa", "aps", "kk", "pty", "pte", "pvt", "sro", "zoo",
        "holding", "holdings",
    }
)  # fmt: skip
_DOTTED_FORMS = re.compile(
    r"\b(s\.?\s?a\.?\s?s|s\.?\s?a\.?\s?r\.?\s?l|s\.?\s?p\.?\s?a|s\.?\s?r\.?\s?l|s\.?\s?a|b\.?\s?v|n\.?\s?v|k\.?\s?k|s\.?\s?l|p\.?\s?l\.?\s?c|l\.?\s?l\.?\s?c|l\.?\s?t\.?\s?d|co)\.?(?=\s|$)"
)
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def company_key(name: str) -> str:
    """A company name reduced to what identifies it: accents, case, punctuation, a leading
    "The" and trailing legal forms removed; "&" is "and".

    "The Acme Robotics, Inc." -> "acme robotics"; "Krämer Maschinenbau GmbH" -> "kramer
    maschinenbau"; "Société Générale S.A." -> "societe generale"; "AT&T Inc." -> "at and t".
    """
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    folded = folded.replace("&", " and ").replace("+", " and ")
    folded = _DOTTED_FORMS.sub(lambda m: m.group(0).replace(".", "").replace(" ", ""), folded)
    words = _NOT_WORD.sub(" ", folded).split()
    if words and words[0] == "the" and len(words) > 1:
        words = words[1:]
    while len(words) > 1 and words[-1] in LEGAL_SUFFIXES:
        words.pop()
    return " ".join(words)


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    type: AccountType
    domain: str | None = None
    owner_id: str | None = None
    owner_email: str | None = None


def _preference(account: Account) -> tuple[int, str]:
    return (0 if account.type == "customer" else 1, account.account_id)


class AccountIndex:
    """Accounts by domain and by normalised name. Immutable once built; `match` is pure."""

    def __init__(
        self, accounts: Iterable[Account], *, fuzzy_threshold: float = 90.0, version: str = ""
    ) -> None:
        self.version = version
        self.fuzzy_threshold = fuzzy_threshold
        by_domain: dict[str, list[Account]] = {}
        by_key: dict[str, list[Account]] = {}
        for account in accounts:
            if account.domain:
                by_domain.setdefault(account.domain.lower(), []).append(account)
            if key := company_key(account.name):
                by_key.setdefault(key, []).append(account)
        self._by_domain = {d: min(a, key=_preference) for d, a in by_domain.items()}
        self._by_key = {k: min(a, key=_preference) for k, a in by_key.items()}
        self._keys = sorted(self._by_key)
        self.match = lru_cache(maxsize=50_000)(self._match)

    def __len__(self) -> int:
        return len({a.account_id for a in (*self._by_domain.values(), *self._by_key.values())})

    def _by_domain_or_parent(self, domain: str) -> Account | None:
        parts = domain.lower().split(".")
        for i in range(len(parts) - 1):
            if account := self._by_domain.get(".".join(parts[i:])):
                return account
        return None

    def _match(
        self, *, email_domain: str | None, website_domain: str | None, company: str | None
    ) -> AccountMatch | None:
        """The best account for a lead, or None. See the module doc for the order of evidence."""
        if email_domain and (account := self._by_domain_or_parent(email_domain)):
            return _matched(
                account, "strong", "email_domain", 100.0, f"email domain {email_domain}"
            )
        if website_domain and (account := self._by_domain_or_parent(website_domain)):
            return _matched(
                account, "strong", "website_domain", 100.0, f"website domain {website_domain}"
            )
        key = company_key(company) if company else ""
        if not key:
            return None
        if account := self._by_key.get(key):
            return _matched(
                account, "strong", "company_name", 100.0, f"company name {company!r} = {key!r}"
            )
        candidates = process.extract(
            key,
            self._keys,
            scorer=fuzz.ratio,
            score_cutoff=self.fuzzy_threshold,
            limit=10,
        )
        if not candidates:
            return None
        best_score = max(score for _, score, _ in candidates)
        best = min(
            (self._by_key[k] for k, score, _ in candidates if score == best_score),
            key=_preference,
        )
        return _matched(
            best,
            "weak",
            "company_name",
            round(best_score, 1),
            f"company name {company!r} ~ {company_key(best.name)!r} ({best_score:.1f}/100)",
        )


def _matched(
    account: Account,
    confidence: Literal["strong", "weak"],
    method: Literal["email_domain", "website_domain", "company_name"],
    score: float,
    evidence: str,
) -> AccountMatch:
    return AccountMatch(
        account_id=account.account_id,
        name=account.name,
        type=account.type,
        owner_id=account.owner_id,
        owner_email=account.owner_email,
        confidence=confidence,
        method=method,
        score=score,
        evidence=evidence,
    )
