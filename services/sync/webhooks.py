"""A delivery request, the Standard Webhooks way (https://www.standardwebhooks.com/).

One event per request (`batch_size` 1, the default):

    POST <url>
    content-type: application/json
    webhook-id: <the event's id>
    webhook-timestamp: <seconds since the epoch, when signed>
    webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">
    idempotency-key: <the event's id>

    {"id": "...", "type": "routing.decision", "timestamp": "...", "data": {...}}

`type` is `routing.decision`, `routing.withdrawal`, `lead.lifecycle` or `privacy.erasure`;
`timestamp` the event's own time; `data` the message exactly as on its topic (its JSON Schema:
shared/contracts/schemas/). Several events per request (`batch_size` > 1):

    {"type": "batch", "timestamp": "<when built>", "data": [<event>, <event>, ...]}

each event with its own `id`; `webhook-id` (and `idempotency-key`) then name the batch, derived
from its events' ids, so a retry of the same events carries the same id. Every attempt is signed
again with its own timestamp (receivers refuse one older than 5 minutes). The id is the same
on every attempt: a receiver dedupes by it (delivery is at-least-once).

Pure: the signer (`standardwebhooks.Webhook`) and the time are arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Envelope:
    """One event as a destination receives it."""

    event_id: str
    type: str
    timestamp: datetime
    data: Any

    def document(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "type": self.type,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data,
        }


@dataclass(frozen=True)
class WebhookRequest:
    webhook_id: str
    body: bytes
    headers: dict[str, str]


def batch_id(event_ids: Sequence[str]) -> str:
    """The id of a request carrying these events (in this order): the same events, the same id."""
    return "batch_" + hashlib.sha256("\n".join(event_ids).encode()).hexdigest()[:40]


def webhook_request(
    events: Sequence[Envelope],
    *,
    signer: Webhook,
    now: datetime,
    batched: bool,
    extra_headers: Mapping[str, str] | None = None,
) -> WebhookRequest:
    """The signed request for `events` (one, unless `batched`: the destination's `batch_size` is
    more than 1, so even a lone event travels as a batch and receivers read one shape)."""
    if not events:
        raise ValueError("a request carries at least one event")
    if batched:
        webhook_id = batch_id([event.event_id for event in events])
        document: dict[str, Any] = {
            "type": "batch",
            "timestamp": now.isoformat(),
            "data": [event.document() for event in events],
        }
    else:
        (event,) = events
        webhook_id = event.event_id
        document = event.document()
    body = orjson.dumps(document)
    headers = {
        **(extra_headers or {}),
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(webhook_id, now, body),
        "idempotency-key": webhook_id,
    }
    return WebhookRequest(webhook_id=webhook_id, body=body, headers=headers)
