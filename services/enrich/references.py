"""Reference data the hot path reads from memory: accounts and the suppression list.

Loaded from enrich's tables at start and swapped whole when they change (`refresh`), so a batch
sees one consistent version and matching never queries the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich import repository
from services.enrich.accounts import AccountIndex
from shared.contracts import LeadProfile


@dataclass(frozen=True)
class Suppressions:
    """Emails and domains nobody may contact, each with the reason it was listed."""

    entries: dict[str, str] = field(default_factory=dict)

    def reason_for(self, profile: LeadProfile) -> str | None:
        candidates = [profile.email, profile.company_domain]
        if profile.email:
            candidates.append(profile.email.rpartition("@")[2])
        for value in candidates:
            if value and (reason := self.entries.get(value.lower())):
                return f"{value} ({reason})"
        return None


class References:
    def __init__(self, *, fuzzy_threshold: float = 90.0) -> None:
        self.fuzzy_threshold = fuzzy_threshold
        self.accounts = AccountIndex([], fuzzy_threshold=fuzzy_threshold)
        self.suppressions = Suppressions()
        self.version = ""

    async def refresh(self, session: AsyncSession) -> bool:
        """Reload if the tables changed since the last load; True if it reloaded."""
        version = await repository.reference_version(session)
        if version == self.version:
            return False
        accounts = await repository.get_accounts(session)
        self.accounts = AccountIndex(
            accounts, fuzzy_threshold=self.fuzzy_threshold, version=version
        )
        self.suppressions = Suppressions(await repository.get_suppressions(session))
        self.version = version
        return True
