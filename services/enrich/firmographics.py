"""Firmographic enrichment: company facts by domain, through a provider interface.

A provider answers `lookup(domain)` with `Firmographics` (sources filled in), None when it does
not know the domain, or raises `ProviderUnavailable` when it cannot answer now (the caller goes
on without firmographics and re-enriches later). Bands are derived here, the same for every
provider, so scoring rules can rely on their spelling.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol

from shared.contracts import Firmographics

SIZE_BANDS: tuple[tuple[int, str], ...] = (
    (10, "1-10"),
    (50, "11-50"),
    (200, "51-200"),
    (500, "201-500"),
    (1000, "501-1000"),
    (5000, "1001-5000"),
    (10000, "5001-10000"),
)
REVENUE_BANDS: tuple[tuple[int, str], ...] = (
    (1_000_000, "<1M"),
    (10_000_000, "1M-10M"),
    (50_000_000, "10M-50M"),
    (100_000_000, "50M-100M"),
    (500_000_000, "100M-500M"),
    (1_000_000_000, "500M-1B"),
)
FIELDS = ("company_name", "employee_count", "industry", "annual_revenue_usd", "country")


class ProviderUnavailable(Exception):
    """The provider cannot answer now (down, slow, circuit open). Not the domain's fault."""


class FirmographicsProvider(Protocol):
    name: str

    async def lookup(self, domain: str) -> Firmographics | None:
        """Company facts for a domain; None if unknown; raises `ProviderUnavailable`."""
        ...


def size_band(employees: int | None) -> str | None:
    if employees is None:
        return None
    return next((band for limit, band in SIZE_BANDS if employees <= limit), "10001+")


def revenue_band(revenue_usd: int | None) -> str | None:
    if revenue_usd is None:
        return None
    return next((band for limit, band in REVENUE_BANDS if revenue_usd < limit), "1B+")


def _int(value: object) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(str(value)))
    except ValueError:
        return None


def firmographics(
    *,
    domain: str,
    provider: str,
    company_name: str | None,
    employee_count: object,
    industry: str | None,
    annual_revenue_usd: object,
    country: str | None,
) -> Firmographics:
    """Firmographics with bands derived and every non-empty field attributed to `provider`."""
    employees = _int(employee_count)
    revenue = _int(annual_revenue_usd)
    values = {
        "company_name": company_name or None,
        "employee_count": employees,
        "industry": industry or None,
        "annual_revenue_usd": revenue,
        "country": (country or "").upper() or None,
    }
    sources = {name: provider for name, value in values.items() if value is not None}
    if employees is not None:
        sources["size_band"] = provider
    if revenue is not None:
        sources["revenue_band"] = provider
    return Firmographics(
        domain=domain,
        size_band=size_band(employees),
        revenue_band=revenue_band(revenue),
        sources=sources,
        **values,
    )


class FileProvider:
    """Companies from a CSV file keyed by domain (columns: domain, company_name, employee_count,
    industry, annual_revenue_usd, country). Loaded once; lookups never fail."""

    def __init__(self, path: Path) -> None:
        self.name = f"file:{path.name}"
        with path.open(newline="", encoding="utf-8") as handle:
            self._companies = {
                row["domain"].strip().lower(): firmographics(
                    domain=row["domain"].strip().lower(),
                    provider=self.name,
                    company_name=row.get("company_name"),
                    employee_count=row.get("employee_count"),
                    industry=row.get("industry"),
                    annual_revenue_usd=row.get("annual_revenue_usd"),
                    country=row.get("country"),
                )
                for row in csv.DictReader(handle)
                if row.get("domain")
            }

    def __len__(self) -> int:
        return len(self._companies)

    async def lookup(self, domain: str) -> Firmographics | None:
        return self._companies.get(domain.lower())
