"""The HTTP API: Segment's tracking endpoints plus health, readiness and metrics.

Answers (Segment's contract, so existing clients work unchanged):
- 200 `{"success": true}` only after the broker acknowledged every event of the request;
- 400 with a reason for a body that is not a valid call (never 422, never 500);
- 401 for a missing or unknown write key;
- 503 with `Retry-After` when the broker did not acknowledge in time (resend: same messageId).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from services.ingest.auth import authenticate
from services.ingest.config import IngestSettings
from services.ingest.publisher import BrokerUnavailable, EventPublisher
from services.ingest.tracking import IdentifyCall, TrackCall, TrackingCall, to_raw_event
from shared.telemetry import MESSAGES_IN

SUCCESS = {"success": True}


def create_app(settings: IngestSettings, publisher: EventPublisher | None = None) -> FastAPI:
    publisher = publisher or EventPublisher(settings.kafka, timeout_s=settings.publish_timeout_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.start()
        try:
            yield
        finally:
            await publisher.stop()

    app = FastAPI(
        title="leadflow ingest",
        summary="Segment-compatible HTTP tracking API",
        version="1",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _bad_request(_reasons(exc.errors()))

    async def accept(request: Request, call_type: type[TrackingCall]) -> Response:
        body = await _json_object(request)
        if isinstance(body, Response):
            return body
        source = authenticate(
            authorization=request.headers.get("authorization"),
            body_write_key=body.get("writeKey"),
            write_keys=settings.write_keys,
        )
        if source is None:
            return JSONResponse(
                {"success": False, "error": "missing or unknown write key"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="leadflow"'},
            )
        try:
            call = call_type.model_validate(body)
        except ValidationError as exc:
            return _bad_request(_reasons(exc.errors()))
        event = to_raw_event(call, source=source, received_at=datetime.now(UTC))
        try:
            await publisher.publish([event])
        except BrokerUnavailable as exc:
            return JSONResponse(
                {"success": False, "error": f"event store unavailable: {exc}"},
                status_code=503,
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        MESSAGES_IN.labels("ingest", f"/v1/{call.type}").inc()
        return JSONResponse(SUCCESS)

    @app.post("/v1/identify", summary="Identify a user: who they are and their traits")
    async def identify(request: Request) -> Response:
        return await accept(request, IdentifyCall)

    @app.post("/v1/track", summary="Record an action a user performed")
    async def track(request: Request) -> Response:
        return await accept(request, TrackCall)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready = publisher.ready
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": {"broker": ready}},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


async def _json_object(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return _bad_request([f"body is not valid JSON: {exc}"])
    if not isinstance(body, dict):
        return _bad_request(["body must be a JSON object"])
    return body


def _reasons(errors: Any) -> list[str]:
    reasons = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        reasons.append(f"{location}: {error['msg']}" if location else str(error["msg"]))
    return reasons


def _bad_request(reasons: list[str]) -> JSONResponse:
    return JSONResponse({"success": False, "errors": reasons}, status_code=400)
