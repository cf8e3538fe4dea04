"""Write keys: who may send what, and as which source.

The key arrives as the user name of HTTP Basic auth (`Authorization: Basic base64("<key>:")`);
Segment's clients may instead put it in the body as `writeKey` (tracking calls only: an
import's body is the file). A deployment configures only each key's SHA-256
(`IngestSettings.write_keys`, `shared.secret_hashes`), with:
- its `source`: every event sent with the key carries it (imports too: the list's name travels
  in `context.import.list`), so a key cannot pose as another source;
- its scopes (`config.WRITE_KEY_SCOPES`): a website's key, which every visitor's browser holds,
  has `track` only; uploading lead lists and reading their reports (personal data) take
  `import`; reading every key's reports takes `admin`; reporting what sales did with leads
  (`POST /v1/crm/feedback`, onto `crm.feedback`) takes `feedback`, which a CRM's own key holds
  and a website's never should (a visitor could close any lead's SLA timer, or disqualify it).

`python -m services.ingest.auth new-key <name> --source <source> --scope track` makes a key
and prints its `LEADFLOW_INGEST_WRITE_KEYS` entry; a CRM's: `new-key salesforce --source
salesforce --scope feedback --no-limit-per-address` (its servers post from a few addresses;
feedback records carry no source: it names the CRM in the key's rate-limit answers).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.ingest.config import WRITE_KEY_SCOPES, WriteKey, WriteKeyScope
from shared.secret_hashes import HashedSecrets, new_secret


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


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the write key's name (the unit of its rate limit and import slots;
    never the key itself) and its configuration."""

    key_name: str
    key: WriteKey

    @property
    def source(self) -> str:
        return self.key.source

    def may(self, scope: WriteKeyScope) -> bool:
        return scope in self.key.scopes


class WriteKeys:
    """The configured write keys, found by a presented key."""

    def __init__(self, keys: Mapping[str, WriteKey]) -> None:
        self._table = HashedSecrets(keys, hash_of="key_sha256")

    def find(self, key: str | None) -> Caller | None:
        """The caller whose key this is, or None for a missing or unknown key."""
        if not key:
            return None
        found = self._table.find(key)
        return Caller(key_name=found[0], key=found[1]) if found else None


def refusal_for_scope(caller: Caller, scope: WriteKeyScope) -> str | None:
    """None when `caller` holds `scope`; else the reason of the 403."""
    if caller.may(scope):
        return None
    return f"write key {caller.key_name!r} lacks the scope {scope!r} ({WRITE_KEY_SCOPES[scope]})"


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.ingest.auth", description="Make a write key for ingest."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    new_key = commands.add_parser(
        "new-key", help="print a new write key and its LEADFLOW_INGEST_WRITE_KEYS entry"
    )
    new_key.add_argument("name", help="the key's name, e.g. website or crm-lists")
    new_key.add_argument("--source", required=True, help="the source its events carry")
    new_key.add_argument(
        "--scope", action="append", choices=sorted(WRITE_KEY_SCOPES), required=True, dest="scopes"
    )
    new_key.add_argument(
        "--no-limit-per-address",
        action="store_false",
        dest="limit_per_address",
        help="a key only your servers use: no limit per client address, only the key's own",
    )
    args = parser.parse_args(argv)
    key = new_secret()
    entry = WriteKey.of(
        key, source=args.source, scopes=args.scopes, limit_per_address=args.limit_per_address
    )
    print(f"write key (give it to the sender; it is not stored anywhere): {key}")
    print(f"LEADFLOW_INGEST_WRITE_KEYS entry: {json.dumps({args.name: entry.model_dump()})}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
