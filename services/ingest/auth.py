"""Write-key authentication as Segment clients send it.

The key arrives as the user name of HTTP Basic auth (`Authorization: Basic base64("<key>:")`);
some clients also put it in the body as `writeKey`. Keys are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass


def key_from_basic_auth(header: str | None) -> str | None:
    """The user name of a Basic `Authorization` header, or None if there is none or it is garbled."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


def source_for_key(key: str | None, write_keys: dict[str, str]) -> str | None:
    """The source name a write key belongs to, or None for an unknown key."""
    if not key:
        return None
    found: str | None = None
    for known, source in write_keys.items():
        if hmac.compare_digest(known.encode(), key.encode()):
            found = source
    return found


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the write key (the rate limit's unit) and the source it belongs to
    (several keys may share a source, e.g. one per website of the same brand)."""

    write_key: str
    source: str


def caller_of(
    *, authorization: str | None, body_write_key: object, write_keys: dict[str, str]
) -> Caller | None:
    """Basic auth first, else a `writeKey` in the body; None when neither names a known key
    (the caller answers 401)."""
    key = key_from_basic_auth(authorization)
    if key is None and isinstance(body_write_key, str):
        key = body_write_key
    source = source_for_key(key, write_keys)
    return Caller(write_key=key, source=source) if key and source else None


def authenticate(
    *, authorization: str | None, body_write_key: object, write_keys: dict[str, str]
) -> str | None:
    """The source a request is from (see `caller_of`), or None for an unknown key."""
    caller = caller_of(
        authorization=authorization, body_write_key=body_write_key, write_keys=write_keys
    )
    return caller.source if caller else None
