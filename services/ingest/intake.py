"""From the bytes of a request to the `events.raw` values it asks for, or the reasons it is
refused. Pure: no I/O, no clock (the arrival time is an argument).

Limits are Segment's: 32 KB per call, 500 KB per batch request (sizes of the JSON as sent,
after gzip is undone; gzip is inflated with the limit as its bound, never further), and JSON
nested at most MAX_NESTING levels (what the event store can write; the parser reads more). A batch is all or nothing: one invalid call refuses the whole request,
with a reason per invalid call naming its index, so a client can fix it and resend without
duplicates.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from services.ingest.tracking import CALLS, TrackingCall, as_utc_when_naive, raw_event_fields
from services.ingest.wire import EncodedEvent, encode_fields

KB = 1024
MAX_CALL_BYTES = 32 * KB
MAX_BATCH_BYTES = 500 * KB
MAX_REASONS = 50  # a client needs the first reasons, not a 10 MB answer
MAX_NESTING = 254  # orjson writes no deeper (it reads 1,024): a call nested deeper is refused
# Parsing costs by the object, not the byte, and runs on the event loop: 500 KB of `{"a":{}}`
# (100,000 objects) takes ~25 ms, a real 450 KB batch (~12,000: five per event) ~3.5 ms. A
# body with more '{' and '[' than this (an upper bound on its objects and lists, counted in
# ~0.3 ms per 450 KB) is refused before it is parsed, so no request holds the loop long.
MAX_CONTAINERS = 25_000
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels (objects and lists in one another)"


class Refused(Exception):
    """The request cannot be accepted as sent; `reasons` say why (the client gets 400)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


class TooLarge(Refused):
    """The body is larger than its endpoint's limit. A tracking call gets 400 as Segment
    answers it; an endpoint of leadflow's own (`/v1/crm/feedback`) answers 413."""


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
        raise TooLarge([too_large(limit)])
    return plain


def too_large(limit: int) -> str:
    """The reason given for a body larger than `limit` bytes."""
    return f"body is larger than {limit // KB} KB (the limit of this endpoint)"


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, refused unparsed when it may hold more than MAX_CONTAINERS
    objects and lists."""
    if len(body) > MAX_CONTAINERS and body.count(b"{") + body.count(b"[") > MAX_CONTAINERS:
        raise Refused(
            [
                f"body holds more than {MAX_CONTAINERS:,} objects and lists (counted as '{{' and"
                " '['): send fewer calls per batch"
            ]
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Refused([f"body is not valid JSON: {exc}"]) from None
    if not isinstance(value, dict):
        raise Refused(["body must be a JSON object"])
    return value


def events_from(
    body: dict[str, Any], *, endpoint: str, source: str, received_at: datetime
) -> list[EncodedEvent]:
    """The `events.raw` records a parsed body asks for: one for `/v1/<type>`, each item of
    `/v1/batch`, in order. Each call is validated once and serialised once.

    Raises `Refused` with every reason (up to `MAX_REASONS`), naming batch items by index.
    """
    if endpoint != "batch":
        return [_single_event(body, call_type=endpoint, source=source, received_at=received_at)]
    items = body.get("batch")
    if not isinstance(items, list):
        raise Refused(["batch: must be a list of calls"])
    if not items:
        raise Refused(["batch: must hold at least one call"])
    wide = _batch_wide(body)
    reasons: dict[int, list[str]] = {}
    checked: list[tuple[int, dict[str, Any]]] = []
    for index, item in enumerate(items):
        problem = _item_problem(item)
        if problem is not None:
            reasons[index] = [problem]
            continue
        checked.append((index, _with_batch_wide(item, wide)))
        if wide.sent_at_problem is not None and item.get("sentAt") is None:
            reasons[index] = [f"sentAt: {wide.sent_at_problem}"]
    calls: list[TrackingCall] = []
    try:
        # One validation for every call of the batch: a call into pydantic per call costs more.
        calls = _BATCH_ITEMS.validate_python([item for _, item in checked])
    except ValidationError as exc:
        for position, item_reasons in _reasons_by_position(exc).items():
            reasons.setdefault(checked[position][0], []).extend(item_reasons)
    if reasons:
        raise batch_refusal(reasons)
    events = []
    for (index, _), call in zip(checked, calls, strict=True):
        try:
            events.append(
                _encoded(call, source=source, received_at=received_at, sent_at=wide.sent_at)
            )
        except Refused as refused:
            reasons[index] = refused.reasons
    if reasons:
        raise batch_refusal(reasons)
    return events


def batch_refusal(reasons: dict[int, list[str]]) -> Refused:
    """The reasons of a batch's calls by index, in index order, at most `MAX_REASONS`."""
    lines = [f"batch[{index}]: {line}" for index in sorted(reasons) for line in reasons[index]]
    if len(lines) > MAX_REASONS:
        lines = [*lines[:MAX_REASONS], f"... and {len(lines) - MAX_REASONS} more"]
    return Refused(lines)


_BATCH_ITEMS: TypeAdapter[list[TrackingCall]] = TypeAdapter(
    list[Annotated[TrackingCall, Field(discriminator="type")]]
)
_SENT_AT: TypeAdapter[datetime] = TypeAdapter(datetime)


@dataclass(frozen=True)
class _BatchWide:
    """What a batch says for all its calls (a call's own values win)."""

    context: dict[str, Any]
    integrations: dict[str, Any]
    sent_at: datetime | None  # parsed once for the batch, not once per call
    sent_at_problem: str | None  # why the batch's sentAt is not a time, if it is not


def _batch_wide(body: dict[str, Any]) -> _BatchWide:
    """What a batch says for all its calls; wrong types here are reported, not ignored."""
    shared: dict[str, dict[str, Any]] = {}
    reasons = []
    for name in ("context", "integrations"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            reasons.append(f"{name}: must be an object")
        else:
            shared[name] = value or {}
    if reasons:
        raise Refused(reasons)
    sent_at, problem = None, None
    if body.get("sentAt") is not None:
        try:
            sent_at = _SENT_AT.validate_python(body["sentAt"])
        except ValidationError as exc:
            problem = "; ".join(reasons_of(exc))
        else:
            sent_at = as_utc_when_naive(sent_at)
    return _BatchWide(shared["context"], shared["integrations"], sent_at, problem)


def _item_problem(item: Any) -> str | None:
    """Why a batch item cannot be validated as a call at all, or None."""
    if not isinstance(item, dict):
        return "must be a JSON object"
    call_type = item.get("type")
    if not isinstance(call_type, str) or call_type not in CALLS:
        return f"type: must be one of {', '.join(CALLS)}, got {call_type!r}"
    try:
        size = len(orjson.dumps(item))
    except orjson.JSONEncodeError:
        return TOO_DEEP  # the only value orjson parsed and cannot write again
    if size > MAX_CALL_BYTES:
        return f"call is {size // KB} KB, larger than {MAX_CALL_BYTES // KB} KB"
    return None


def _with_batch_wide(item: dict[str, Any], wide: _BatchWide) -> dict[str, Any]:
    """The item with the batch's context and integrations under its own (sentAt is applied
    after validation, see `_encoded`)."""
    if not (wide.context or wide.integrations):
        return item
    merged = dict(item)
    for name, shared in (("context", wide.context), ("integrations", wide.integrations)):
        if shared:
            own = item.get(name)
            merged[name] = {**shared, **own} if isinstance(own, dict) else shared
    return merged


def _reasons_by_position(exc: ValidationError) -> dict[int, list[str]]:
    """A list validation's errors per list position; locations start (position, type, ...)."""
    reasons: dict[int, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        position = location[0] if location and isinstance(location[0], int) else 0
        reasons.setdefault(position, []).append(reason_line(location[2:], error["msg"]))
    return reasons


def _single_event(
    call: dict[str, Any], *, call_type: str, source: str, received_at: datetime
) -> EncodedEvent:
    model = CALLS.get(call_type)
    if model is None:
        raise Refused([f"type: must be one of {', '.join(CALLS)}, got {call_type!r}"])
    if call.get("type", call_type) != call_type:
        raise Refused([f"type: {call.get('type')!r} posted to /v1/{call_type}"])
    try:
        parsed = model.model_validate(call)
    except ValidationError as exc:
        raise Refused(reasons_of(exc)) from None
    return _encoded(parsed, source=source, received_at=received_at, sent_at=None)


def _encoded(
    call: TrackingCall, *, source: str, received_at: datetime, sent_at: datetime | None
) -> EncodedEvent:
    try:
        return encode_fields(
            raw_event_fields(call, source=source, received_at=received_at, batch_sent_at=sent_at)
        )
    except OverflowError:
        # receivedAt - (sentAt - timestamp) falls outside the calendar (years 1-9999).
        raise Refused(["timestamp: too far from sentAt to correct the client's clock"]) from None
    except orjson.JSONEncodeError:
        # A body orjson parsed but cannot write again is one nested too deep.
        raise Refused([TOO_DEEP]) from None


def reasons_of(exc: ValidationError) -> list[str]:
    """pydantic errors as `field: message` lines (wire names, no URLs)."""
    return [
        reason_line(error["loc"], error["msg"])
        for error in exc.errors(include_url=False, include_input=False)
    ]


def reason_line(location: Sequence[int | str], message: str) -> str:
    """One pydantic error as `field.path: message` (no "Value error, " prefix)."""
    where = ".".join(str(part) for part in location)
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
