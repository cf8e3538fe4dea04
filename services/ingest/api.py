"""The public HTTP API: Segment's tracking endpoints, the lead-list import and CRM feedback
(`POST /v1/crm/feedback`, onto `crm.feedback`: `crm_feedback`). Health, readiness and metrics
are served on ingest's health port (`health_app`), not here; the API's documentation (`/docs`,
`/openapi.json`) only by the local stack (`IngestSettings.local_stack`).

Answers (Segment's contract, so existing clients work unchanged):
- 200 `{"success": true}` only after the broker acknowledged every event of the request;
- 400 with a reason per problem for a body that is not valid (never 422, never 500: JSON
  nested deeper than the event store writes included); a batch with any invalid call is
  refused whole, its reasons naming each call by index;
- 401 for a missing or unknown write key; 403 for a key without the `track` scope;
- 408 for a body that arrives too slowly (`body.paced_chunks`); the connection is closed;
- 429 with `Retry-After` when the client address or the write key sent more events than its
  rate limit allows, or the address sent too many unknown keys (`admission`);
- 503 with `Retry-After` when the broker did not acknowledge in time (resend: same messageId; a
  call sent without one gets one derived from its content, `tracking.derived_message_id`, so
  resending it unchanged is safe too).

CRM feedback answers the same way, but for: the key only from HTTP Basic (never the body),
401 for none or an unknown one and 403 for a key without the `feedback` scope (a website's
key); 413 for a body larger than 500 KB or a batch of more than 1,000 reports; 503: resend the
same reports (same feedback_ids: the consumers apply each once).

Bodies are read and parsed here (not by FastAPI) to enforce the size limits before parsing, to
undo gzip with a cap, and for speed; the OpenAPI document still describes every body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from services.ingest.admission import Admission, Refusal
from services.ingest.answers import client_address, refusal_response
from services.ingest.auth import key_from_basic_auth
from services.ingest.body import TooSlow, paced_chunks
from services.ingest.config import IngestSettings
from services.ingest.crm_feedback import MAX_FEEDBACK_BYTES, PATH, feedback_records
from services.ingest.intake import (
    Refused,
    TooLarge,
    decompressed,
    events_from,
    json_object,
    limit_for,
    too_large,
)
from services.ingest.lead_import import create_import_router
from services.ingest.openapi import ENDPOINTS, FEEDBACK_SUMMARY, document_bodies
from services.ingest.publisher import BrokerUnavailable, EventPublisher
from shared.http import create_api, health_router
from shared.telemetry import MESSAGES_IN
from shared.topics import CRM_FEEDBACK

SUCCESS = b'{"success":true}'


def create_app(settings: IngestSettings, publisher: EventPublisher | None = None) -> FastAPI:
    publisher = publisher or EventPublisher(settings.kafka, timeout_s=settings.publish_timeout_s)
    admission = Admission(settings)

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
            "(`Content-Encoding: gzip`). Limits: 32 KB per call, 500 KB per batch request. "
            "CRMs report what sales did with a lead to `/v1/crm/feedback`, with a key of their "
            "own (scope `feedback`)."
        ),
        lifespan=lifespan,
        docs=settings.local_stack,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad_request([str(error.get("msg")) for error in exc.errors()])

    async def accept(request: Request, endpoint: str) -> Response:
        received_at = datetime.now(UTC)
        address = client_address(request)
        # A key in the header is checked before the body is read; only a call that names its
        # key in the body (`writeKey`) is read first, within the endpoint's size limit.
        header = request.headers.get("authorization")
        by_header = None
        if header is not None:
            by_header = admission.authenticate(
                key_from_basic_auth(header), scope="track", address=address, now=time.monotonic()
            )
            if isinstance(by_header, Refusal):
                return refusal_response(by_header)
        elif refusal := admission.before_reading(address, now=time.monotonic()):
            return refusal_response(refusal)
        try:
            body = json_object(
                await _read_body(request, limit=limit_for(endpoint), settings=settings)
            )
        except Refused as refused:
            return _bad_request(refused.reasons)
        except TooSlow as slow:
            return refusal_response(Refusal(408, str(slow)))
        caller = by_header or admission.authenticate(
            _written_key(body), scope="track", address=address, now=time.monotonic()
        )
        if isinstance(caller, Refusal):
            return refusal_response(caller)
        try:
            events = events_from(
                body, endpoint=endpoint, source=caller.source, received_at=received_at
            )
        except Refused as refused:
            return _bad_request(refused.reasons)
        if refusal := admission.admit(
            caller, address=address, events=len(events), now=time.monotonic()
        ):
            return refusal_response(refusal)
        try:
            await publisher.publish(events)
        except BrokerUnavailable as exc:
            return _unavailable(exc, settings)
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

    @app.post(PATH, summary=FEEDBACK_SUMMARY, name="crm_feedback", response_model=None)
    async def post_crm_feedback(request: Request) -> Response:
        """A CRM's reports (`crm_feedback`), with its key in HTTP Basic only: checked before
        the body is read."""
        address = client_address(request)
        caller = admission.authenticate(
            key_from_basic_auth(request.headers.get("authorization")),
            scope="feedback",
            address=address,
            now=time.monotonic(),
        )
        if isinstance(caller, Refusal):
            return refusal_response(caller)
        try:
            body = json_object(
                await _read_body(request, limit=MAX_FEEDBACK_BYTES, settings=settings)
            )
            records = feedback_records(body)
        except TooLarge as large:
            return refusal_response(Refusal(413, "; ".join(large.reasons)))
        except Refused as refused:
            return _bad_request(refused.reasons)
        except TooSlow as slow:
            return refusal_response(Refusal(408, str(slow)))
        if refusal := admission.admit(
            caller, address=address, events=len(records), now=time.monotonic()
        ):
            return refusal_response(refusal)
        try:
            await publisher.publish(records, topic=CRM_FEEDBACK)
        except BrokerUnavailable as exc:
            return _unavailable(exc, settings)
        MESSAGES_IN.labels("ingest", PATH).inc(len(records))
        return Response(SUCCESS, media_type="application/json")

    app.include_router(create_import_router(settings, publisher, admission))
    document_bodies(app)
    return app


def health_app(publisher: EventPublisher) -> FastAPI:
    """Ingest's health port: `/healthz`, `/readyz` (the broker acknowledges `publisher`) and
    `/metrics`, for probes and Prometheus only; the public port serves none of them."""

    async def readiness() -> dict[str, bool]:
        return {"broker": publisher.ready}

    health = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    health.include_router(health_router(readiness))
    return health


def _written_key(body: dict[str, Any]) -> str | None:
    """The `writeKey` some Segment clients put in the body instead of the header."""
    written = body.get("writeKey")
    return written if isinstance(written, str) else None


def _handler(
    accept: Callable[[Request, str], Awaitable[Response]], endpoint: str
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        return await accept(request, endpoint)

    handle.__name__ = f"post_{endpoint}"
    return handle


async def _read_body(request: Request, *, limit: int, settings: IngestSettings) -> bytes:
    """The body, decompressed, refusing (before reading it all) one larger than `limit`, and
    one that arrives too slowly (`TooSlow`)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge([too_large(limit)])
    chunks: list[bytes] = []
    size = 0
    async for chunk in paced_chunks(
        request,
        idle_timeout_s=settings.body_idle_timeout_s,
        deadline_s=settings.tracking_body_deadline_s,
    ):
        size += len(chunk)
        if size > limit:
            raise TooLarge([too_large(limit)])
        chunks.append(chunk)
    return decompressed(
        b"".join(chunks),
        content_encoding=request.headers.get("content-encoding"),
        limit=limit,
    )


def _bad_request(reasons: list[str]) -> JSONResponse:
    return JSONResponse({"success": False, "errors": reasons}, status_code=400)


def _unavailable(exc: BrokerUnavailable, settings: IngestSettings) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": f"event store unavailable: {exc}"},
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_s)},
    )
