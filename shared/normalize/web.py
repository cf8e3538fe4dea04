"""Domains from email addresses and websites."""

from __future__ import annotations

from urllib.parse import urlsplit

from shared.normalize.errors import InvalidValue


def domain_of_email(address: str) -> str:
    """The domain part of an already normalised email ("bob@acme.io" -> "acme.io")."""
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        raise InvalidValue("email", address, "no domain")
    return domain.lower()


def domain_of_website(url: str) -> str | None:
    """The registrable host of a website as typed in forms: "https://www.Acme.io/about" and
    "acme.io" both give "acme.io". None when there is no host-like part."""
    candidate = url.strip().lower()
    if not candidate:
        return None
    if "://" not in candidate:
        candidate = "http://" + candidate
    try:
        host = urlsplit(candidate).hostname
    except ValueError:
        return None
    if not host or "." not in host:
        return None
    return host.removeprefix("www.")
