"""From the bytes of a request to the `events.raw` values it asks for, or the reasons it is
refused. Pure: no I/O, no clock (the arrival time is an argument).

Limits are Segment's: 32 KB per call, 500 KB per batch request (sizes of the JSON as sent,
after gzip is undone). A batch is all or nothing: one invalid call refuses the whole request,
with a reason per invalid call naming its index, so a client can fix it and resend without
duplicates.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

from services.ingest.tracking import CALLS, to_raw_event
from shared.contracts import RawEvent

KB = 1024
MAX_CALL_BYTES = 32 * KB
MAX_BATCH_BYTES = 500 * KB
MAX_REASONS = 50  # a client needs the first reasons, not a 10 MB answer


class Refused(Exception):
    """The request cannot be accepted as sent; `reasons` say why (the client gets 400)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


def limit_for(endpoint: str) -> int:
    """The largest body (decompressed) an endpoint takes: `batch` or a call type."""
    return MAX_BATCH_BYTES if endpoint == "batch" else MAX_CALL_BYTES


def decompressed(body: bytes, *, content_encoding: str | None, limit: int) -> bytes:
    """The body with gzip/deflate undone, never inflating more than `limit` bytes (a small
    compressed body can expand a thousandfold: the cap makes that a 400, not an outage)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "identity":
        plain = body
    elif encoding in ("gzip", "x-gzip", "deflate"):
        # wbits: 16+ for a gzip header, 32+ to accept zlib or gzip (some clients say deflate).
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else 32 + 15)
        try:
            plain = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise Refused([f"body is not valid {encoding}: {exc}"]) from None
        if len(plain) <= limit and not inflater.eof:
            raise Refused([f"body is not valid {encoding}: truncated stream"])
    else:
        raise Refused([f"Content-Encoding {encoding!r} is not supported (use gzip)"])
    if len(plain) > limit:
        raise Refused([f"body is larger than {limit // KB} KB (the limit of this endpoint)"])
    return plain


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused([f"body is not valid JSON: {exc}"]) from None
    if not isinstance(value, dict):
        raise Refused(["body must be a JSON object"])
    return value


def events_from(
    body: dict[str, Any], *, endpoint: str, source: str, received_at: datetime
) -> list[RawEvent]:
    """The events a parsed body asks for: one for `/v1/<type>`, each item of `/v1/batch`.

    Raises `Refused` with every reason (up to `MAX_REASONS`), naming batch items by index.
    """
    if endpoint != "batch":
        return [_event(body, call_type=endpoint, source=source, received_at=received_at)]
    items = body.get("batch")
    if not isinstance(items, list):
        raise Refused(["batch: must be a list of calls"])
    if not items:
        raise Refused(["batch: must hold at least one call"])
    shared = _batch_wide(body)
    events: list[RawEvent] = []
    reasons: list[str] = []
    for index, item in enumerate(items):
        try:
            call = _batch_item(item, shared)
            events.append(
                _event(call, call_type=call.get("type"), source=source, received_at=received_at)
            )
        except Refused as refused:
            reasons += [f"batch[{index}]: {reason}" for reason in refused.reasons]
    if reasons:
        if len(reasons) > MAX_REASONS:
            reasons = [*reasons[:MAX_REASONS], f"... and {len(reasons) - MAX_REASONS} more"]
        raise Refused(reasons)
    return events


def _batch_wide(body: dict[str, Any]) -> dict[str, Any]:
    """What a batch says for all its calls; wrong types here are reported, not ignored."""
    shared: dict[str, Any] = {}
    reasons = []
    for name in ("context", "integrations"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            reasons.append(f"{name}: must be an object")
        elif value:
            shared[name] = value
    if body.get("sentAt") is not None:
        shared["sentAt"] = body["sentAt"]
    if reasons:
        raise Refused(reasons)
    return shared


def _batch_item(item: Any, shared: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise Refused(["must be a JSON object"])
    size = len(orjson.dumps(item))
    if size > MAX_CALL_BYTES:
        raise Refused([f"call is {size // KB} KB, larger than {MAX_CALL_BYTES // KB} KB"])
    if not shared:
        return item
    merged = dict(item)
    for name in ("context", "integrations"):
        if name in shared:
            own = item.get(name)
            merged[name] = {**shared[name], **own} if isinstance(own, dict) else shared[name]
    if "sentAt" in shared and item.get("sentAt") is None:
        merged["sentAt"] = shared["sentAt"]
    return merged


def _event(call: dict[str, Any], *, call_type: Any, source: str, received_at: datetime) -> RawEvent:
    model = CALLS.get(call_type) if isinstance(call_type, str) else None
    if model is None:
        raise Refused([f"type: must be one of {', '.join(CALLS)}, got {call_type!r}"])
    if call.get("type", call_type) != call_type:
        raise Refused([f"type: {call.get('type')!r} posted to /v1/{call_type}"])
    try:
        parsed = model.model_validate(call)
    except ValidationError as exc:
        raise Refused(reasons_of(exc)) from None
    try:
        return to_raw_event(parsed, source=source, received_at=received_at)
    except OverflowError:
        # receivedAt - (sentAt - timestamp) falls outside the calendar (years 1-9999).
        raise Refused(["timestamp: too far from sentAt to correct the client's clock"]) from None


def reasons_of(exc: ValidationError) -> list[str]:
    """pydantic errors as `field: message` lines (wire names, no URLs)."""
    reasons = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        reasons.append(f"{location}: {message}" if location else message)
    return reasons
