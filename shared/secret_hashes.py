"""Secrets configured by their hash: the services' API tokens and ingest's write keys.

A deployment configures only the SHA-256 of each secret (hex), so its settings, its Secret
objects and any dump of them hold no credential. The secrets themselves are 32 random bytes
(`new_secret`): for a secret that cannot be guessed one SHA-256 is as strong as a slow password
hash (those protect low-entropy passwords) and costs a microsecond per request.

`HashedSecrets.find` compares the presented secret's hash with every entry in constant time, so
the answer's time says neither how close a guess was nor which entry matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

SHA256_HEX = r"^[0-9a-f]{64}$"
"""The pattern of a configured hash (pydantic `Field(pattern=...)`)."""


def secret_hash(secret: str) -> str:
    """The SHA-256 (hex) a deployment configures for `secret`."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    """A new secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


class HashedSecrets(Generic[T]):
    """Named entries, each holding the hash of its secret (`hash_of(entry)`), found by secret."""

    def __init__(self, entries: Mapping[str, T], *, hash_of: str) -> None:
        self._entries = [
            (name, entry, str(getattr(entry, hash_of)).encode())
            for name, entry in sorted(entries.items())
        ]

    def find(self, secret: str) -> tuple[str, T] | None:
        """The name and entry whose secret this is, or None (every entry is compared)."""
        presented = secret_hash(secret).encode()
        found = None
        for name, entry, expected in self._entries:
            if hmac.compare_digest(presented, expected):
                found = (name, entry)
        return found
