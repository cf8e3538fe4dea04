"""Loading accounts and suppression lists from CSV files into enrich's tables (idempotent:
rows are upserted by account_id / value, so loading a file twice changes nothing)."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from services.enrich import repository
from services.enrich.accounts import Account
from shared import normalize


class BadFile(ValueError):
    """A file that cannot be loaded; the message names the file, line and problem."""


def read_accounts(path: Path) -> list[Account]:
    """Columns: account_id, name, domain (optional), type (customer|target), owner_id,
    owner_email (optional). Domains are normalised like websites ("https://www.x.io" -> x.io)."""
    accounts = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            account_id = (row.get("account_id") or "").strip()
            name = normalize.text(row.get("name"))
            kind = (row.get("type") or "").strip().lower()
            if not account_id or not name:
                raise BadFile(f"{path}:{line}: account_id and name are required")
            if kind not in ("customer", "target"):
                raise BadFile(f"{path}:{line}: type must be customer or target, not {kind!r}")
            domain = normalize.domain_of_website(row.get("domain") or "")
            accounts.append(
                Account(
                    account_id=account_id,
                    name=name,
                    type=kind,  # type: ignore[arg-type]
                    domain=domain,
                    owner_id=normalize.text(row.get("owner_id")),
                    owner_email=normalize.text(row.get("owner_email")),
                )
            )
    return accounts


def read_suppressions(path: Path) -> list[tuple[str, str]]:
    """Columns: value (an email or a domain), reason."""
    entries = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            value = (row.get("value") or "").strip().lower()
            if not value:
                raise BadFile(f"{path}:{line}: value is required")
            entries.append((value, normalize.text(row.get("reason")) or "listed"))
    return entries


async def load_accounts(session: AsyncSession, path: Path) -> int:
    accounts = read_accounts(path)
    await repository.upsert_accounts(session, accounts)
    return len(accounts)


async def load_suppressions(session: AsyncSession, path: Path) -> int:
    entries = read_suppressions(path)
    await repository.upsert_suppressions(session, entries)
    return len(entries)
