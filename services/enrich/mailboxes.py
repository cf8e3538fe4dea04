"""Which email domains say nothing about an employer: free-mail and disposable providers.

The lists are data files shipped with the service (`data/*.txt`, one domain per line) so they
can be updated without touching code. A subdomain of a listed domain counts too.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"


def _load(name: str) -> frozenset[str]:
    lines = (DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    return frozenset(
        line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
    )


@cache
def free_mail_domains() -> frozenset[str]:
    return _load("free_mail_domains.txt")


@cache
def disposable_domains() -> frozenset[str]:
    return _load("disposable_email_domains.txt")


def _listed(domain: str, listed: frozenset[str]) -> bool:
    parts = domain.lower().split(".")
    return any(".".join(parts[i:]) in listed for i in range(len(parts) - 1))


@lru_cache(maxsize=4096)  # asked for every event's email domain; the lists never change
def is_free_mail(domain: str) -> bool:
    return _listed(domain, free_mail_domains())


@lru_cache(maxsize=4096)
def is_disposable(domain: str) -> bool:
    return _listed(domain, disposable_domains())
