"""The HTTP API: Segment's tracking endpoints plus health, readiness and metrics (the shared
`health_router`) and the API's documentation at `/docs`.

Answers (Segment's contract, so existing clients work unchanged):
- 200 `{"success": true}` only after the broker acknowledged every event of the request;
- 400 with a reason per problem for a body that is not valid (never 422, never 500: JSON
  nested deeper than the event store writes included); a batch with any invalid call is
  refused whole, its reasons naming each call by index;
- 401 for a missing or unknown write key;
- 429 with `Retry-After` when the write key sent more events than its rate limit allows;
- 503 with `Retry-After` when the broker did not acknowledge in time (resend: same messageId; a
  call sent without one gets one derived from its content, `tracking.derived_message_id`, so
  resending it unchanged is safe too).

Bodies are read and parsed here (not by FastAPI) to enforce the size limits before parsing, to
undo gzip with a cap, and for speed; the OpenAPI document still describes every body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from services.ingest.auth import caller_of
from services.ingest.config import IngestSettings
from services.ingest.intake import (
    Refused,
    decompressed,
    events_from,
    json_object,
    limit_for,
)
from services.ingest.lead_import import create_import_router
from services.ingest.openapi import ENDPOINTS, document_bodies
from services.ingest.publisher import BrokerUnavailable, EventPublisher
from services.ingest.rate_limit import RateLimits
from shared.http import create_api, health_router
from shared.telemetry import MESSAGES_IN

SUCCESS = b'{"success":true}'
UNAUTHORIZED = {"success": False, "error": "missing or unknown write key"}


def create_app(settings: IngestSettings, publisher: EventPublisher | None = None) -> FastAPI:
    publisher = publisher or EventPublisher(settings.kafka, timeout_s=settings.publish_timeout_s)
    rate_limits = RateLimits(rate=settings.rate_limit_events_per_s, burst=settings.rate_limit_burst)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = create_api(
        title="leadflow ingest",
        summary="Segment-compatible HTTP tracking API",
        description=(
            "Send calls the way Segment clients do: HTTP Basic auth with the write key as user "
            "name (or `writeKey` in the body), JSON bodies, optionally gzip "
            "(`Content-Encoding: gzip`). Limits: 32 KB per call, 500 KB per batch request."
        ),
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad_request([str(error.get("msg")) for error in exc.errors()])

    async def accept(request: Request, endpoint: str) -> Response:
        received_at = datetime.now(UTC)
        try:
            body = json_object(await _read_body(request, limit=limit_for(endpoint)))
        except Refused as refused:
            return _bad_request(refused.reasons)
        caller = caller_of(
            authorization=request.headers.get("authorization"),
            body_write_key=body.get("writeKey"),
            write_keys=settings.write_keys,
        )
        if caller is None:
            return JSONResponse(
                UNAUTHORIZED,
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="leadflow"'},
            )
        try:
            events = events_from(
                body, endpoint=endpoint, source=caller.source, received_at=received_at
            )
        except Refused as refused:
            return _bad_request(refused.reasons)
        # Per write key: two keys of one source (two websites of a brand) do not starve each
        # other, and a leaked key can be throttled (and rotated) without the source's others.
        wait_s = rate_limits.retry_after(caller.write_key, events=len(events), now=time.monotonic())
        if wait_s is not None:
            return JSONResponse(
                {
                    "success": False,
                    "error": f"rate limit of this write key (source {caller.source!r}) exceeded",
                },
                status_code=429,
                headers={"Retry-After": str(wait_s)},
            )
        try:
            await publisher.publish(events)
        except BrokerUnavailable as exc:
            return JSONResponse(
                {"success": False, "error": f"event store unavailable: {exc}"},
                status_code=503,
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        MESSAGES_IN.labels("ingest", f"/v1/{endpoint}").inc(len(events))
        return Response(SUCCESS, media_type="application/json")

    for endpoint, summary in ENDPOINTS.items():
        app.add_api_route(
            f"/v1/{endpoint}",
            _handler(accept, endpoint),
            methods=["POST"],
            summary=summary,
            name=endpoint,
            response_model=None,
        )

    async def readiness() -> dict[str, bool]:
        return {"broker": publisher.ready}

    app.include_router(health_router(readiness))
    app.include_router(create_import_router(settings, publisher))
    document_bodies(app)
    return app


def _handler(
    accept: Callable[[Request, str], Awaitable[Response]], endpoint: str
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await accept(request, endpoint)

    handle.__name__ = f"post_{endpoint}"
    return handle


async def _read_body(request: Request, *, limit: int) -> bytes:
    """The body, decompressed, refusing (before reading it all) one larger than `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused([f"body is larger than {limit // 1024} KB (the limit of this endpoint)"])
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused([f"body is larger than {limit // 1024} KB (the limit of this endpoint)"])
        chunks.append(chunk)
    return decompressed(
        b"".join(chunks),
        content_encoding=request.headers.get("content-encoding"),
        limit=limit,
    )


def _bad_request(reasons: list[str]) -> JSONResponse:
    return JSONResponse({"success": False, "errors": reasons}, status_code=400)
