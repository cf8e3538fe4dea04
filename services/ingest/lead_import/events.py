"""A merged lead as the identify call that goes to `events.raw` (its wire fields, serialised by
`wire.encode_fields`). Pure: no I/O, no clock.

- `source` is the write key's source, as for every event that key sends (a key cannot pose as
  another source); the list's name travels in `context.import.list` (what a scoring or routing
  rule matches on to single out a list: "webinar-2026-q4").
- An import asserts only what it knows. `userId` is the list's user id column when mapped;
  without one the call carries no userId and no anonymousId, and the lead is identified by
  `traits.email` alone (`RawEvent` allows exactly this for an imported identify call; its key
  on `events.raw` is then the email). A list does not know the website's user id: writing the
  email there would claim one, and the website's real userId for the same email later joins
  the imported lead through the email instead.
- `messageId` is derived from the list name, the email and the merged traits, so uploading the
  same file again (after a 503, a dropped connection, or by mistake) produces the same ids and
  enrich drops the repeats; a changed row is a new message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from services.ingest.lead_import.rows import Lead

_MESSAGE_IDS = uuid.UUID("5b0f7a52-3c1e-4f0e-9a57-1ead11570000")
LIBRARY = {"name": "leadflow-lead-import", "version": "1"}


def message_id(*, list_name: str, lead: Lead) -> str:
    content = orjson.dumps(
        [list_name, lead.email, lead.user_id, lead.traits], option=orjson.OPT_SORT_KEYS
    )
    return "import-" + str(uuid.uuid5(_MESSAGE_IDS, content.decode()))


def identify_event(
    lead: Lead,
    *,
    first_row: int,
    list_name: str,
    import_id: str,
    source: str,
    received_at: datetime,
) -> dict[str, Any]:
    """The identify call's `events.raw` fields, by their wire names; valid for `RawEvent` by
    construction (`rows.normalise_row` checked the email and userId, the list name is 1-200
    characters: `api`; `context.import` and `traits.email` are what lets a call without
    userId or anonymousId through)."""
    return {
        "type": "identify",
        "messageId": message_id(list_name=list_name, lead=lead),
        "source": source,
        "receivedAt": received_at,
        "timestamp": received_at,
        "userId": lead.user_id,
        "traits": lead.traits,
        "context": {
            "library": LIBRARY,
            "import": {
                "id": import_id,
                "list": list_name,
                "row": first_row,
            },
        },
    }
