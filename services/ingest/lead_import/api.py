"""`POST /v1/leads/import` and `GET /v1/leads/import/{id}`: the HTTP edge of the lead-list upload.

Answers:
- 200 with the report once every lead of the file is acknowledged by the broker (acks=all);
- 400 with a reason when the file as a whole cannot be imported (not UTF-8, empty, no email
  column, a bad mapping, too many columns): nothing of it is published;
- 401 for a missing or unknown write key, 403 for a key without the `import` scope (reading
  a report: the key that started it, or one with `admin`); 409 for an import id still running;
- 408 when the file arrives too slowly (`IngestSettings.body_idle_timeout_s`,
  `import_min_rate_bytes_per_s`): nothing of it is published and the connection is closed;
- 413 with the reason when the file passes a limit of the replica (`IngestSettings.import_*`:
  how far a gzip body inflates, its compression ratio, the merge spool's bytes): nothing of it
  is published and its spool file is deleted;
- 415 for a format that is neither CSV nor NDJSON; 429 when too many imports run at once on
  the replica, or for the write key (`import_slots`, `import_slots_per_key`);
- 503 with `Retry-After` when the broker stops acknowledging part-way: upload the same file
  again; the leads already published carry the same messageIds and are dropped as repeats.
Every lead's identify event carries the write key's source; the list's name is in
`context.import.list`. Publishing draws from the key's rate limit, waiting when it runs dry.
Rows that cannot be imported never fail the request: the report lists them by row number. A
row whose optional value fails its check (a phone, a country) is imported without that value,
and the report lists what was dropped as a warning, also by row number.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from services.ingest.admission import Admission, Refusal
from services.ingest.answers import client_address, refusal_response
from services.ingest.auth import Caller, key_from_basic_auth
from services.ingest.body import MinimumPace, TooSlow, paced_chunks
from services.ingest.config import IngestSettings
from services.ingest.lead_import.progress import ImportInProgress, ImportRegistry, ReportExpired
from services.ingest.lead_import.reading import DELIMITERS, BadUpload, UploadTooLarge
from services.ingest.lead_import.report import ImportReport, ImportState
from services.ingest.lead_import.spool import LeadSpool, SpoolQuota
from services.ingest.lead_import.upload import FileFormat, LeadListUpload
from services.ingest.publisher import BrokerUnavailable, EventPublisher
from services.ingest.wire import EncodedEvent
from shared.telemetry import MESSAGES_IN

log = logging.getLogger(__name__)

PUBLISH_BATCH = 500  # leads per publish call; awaiting each call's acks is the backpressure
MAX_DISCARD = 100 * 1024 * 1024
_CHUNK = 256 * 1024  # body bytes handed to the worker thread at once
_IMPORT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_CSV_TYPES = {"text/csv", "application/csv", "text/plain", "text/tab-separated-values"}
_NDJSON_TYPES = {"application/x-ndjson", "application/jsonl", "application/json-lines"}


def create_import_router(
    settings: IngestSettings, publisher: EventPublisher, admission: Admission
) -> APIRouter:
    router = APIRouter(tags=["lead lists"])
    registry = ImportRegistry(
        ttl_s=settings.import_report_ttl_s, max_bytes=settings.import_reports_max_bytes
    )
    spool_quota = SpoolQuota(settings.import_spool_max_total_bytes)
    pace = MinimumPace(
        bytes_per_s=settings.import_min_rate_bytes_per_s, grace_s=settings.import_rate_grace_s
    )

    def caller_of(request: Request, *, reading: bool) -> Caller | Refusal:
        """The request's caller, from HTTP Basic only (the body is the file): `import` to
        upload; to read a report, `import` (its own) or `admin` (any)."""
        address = client_address(request)
        now = time.monotonic()
        key = key_from_basic_auth(request.headers.get("authorization"))
        caller = admission.authenticate(key, scope="import", address=address, now=now)
        if reading and isinstance(caller, Refusal) and caller.status == 403:
            return admission.authenticate(key, scope="admin", address=address, now=now)
        return caller

    @router.post(
        "/v1/leads/import",
        summary="Import a lead list (CSV or NDJSON), streamed; answers with the import report",
        response_model=None,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {"type": "string"},
                        "example": "E-mail,Full Name,Company,Phone,Country\n"
                        "ada@initech.com,Ada Lovelace,Initech,020 7183 8750,UK\n",
                    },
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def import_leads(
        request: Request,
        list_name: str | None = Query(
            default=None,
            alias="list",
            description="Required. The list's name (1-200 characters): becomes the `source` "
            "of every lead's identify event",
        ),
        mapping: str | None = Query(
            default=None,
            description='JSON object header -> field (or null to ignore), e.g. {"Mail": "email"}',
        ),
        delimiter: str | None = Query(default=None, description="CSV delimiter; else guessed"),
        file_format: str | None = Query(
            default=None, alias="format", description="csv or ndjson; else from Content-Type"
        ),
        import_id: str | None = Header(
            default=None,
            alias="X-Import-Id",
            description="Client-chosen id to follow the import's progress",
        ),
    ) -> Response:
        caller = caller_of(request, reading=False)
        if isinstance(caller, Refusal):
            return refusal_response(caller)
        list_name = (list_name or "").strip()
        if not 0 < len(list_name) <= 200:
            # Checked here, not by FastAPI, so the answer names the parameter.
            return _error(
                400, "the query parameter 'list' (the list's name, 1-200 characters) is required"
            )
        try:
            chosen_format = _file_format(file_format, request.headers.get("content-type"))
            given_mapping = _mapping(mapping)
        except _Refusal as refusal:
            return refusal.response
        if delimiter is not None and delimiter not in DELIMITERS:
            return _error(400, f"delimiter must be one of {DELIMITERS!r}")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip"):
            return _error(415, f"Content-Encoding {encoding!r} is not supported (use gzip)")
        if import_id is not None and not _IMPORT_ID.match(import_id):
            return _error(400, "X-Import-Id: 1-100 letters, digits, '.', '_', ':' or '-'")
        if registry.running >= settings.import_slots:
            return _error(429, "too many imports are running; retry later", retry_after=30)
        if registry.running_for(caller.key_name) >= settings.import_slots_per_key:
            return _error(
                429,
                f"write key {caller.key_name!r} already runs {settings.import_slots_per_key} "
                "imports (its limit); retry when one has finished",
                retry_after=30,
            )
        report = ImportReport(
            import_id=import_id or str(uuid.uuid4()), list_name=list_name, owner=caller.key_name
        )
        try:
            registry.begin(report)
        except ImportInProgress:
            return _error(409, f"import {report.import_id!r} is still running")
        try:
            spool = await asyncio.to_thread(
                LeadSpool.scratch_file,
                max_bytes=settings.import_spool_max_bytes,
                quota=spool_quota,
            )
            upload = LeadListUpload(
                report=report,
                file_format=chosen_format,
                mapping=given_mapping,
                delimiter=delimiter,
                spool=spool,
                max_inflated_bytes=settings.import_max_inflated_bytes,
                max_gzip_ratio=settings.import_max_gzip_ratio,
            )
        except BaseException:
            report.fail("stopped")
            registry.finish(report, now=time.monotonic())
            raise
        try:
            return await _run(request, upload, report, caller)
        finally:
            if report.state in (ImportState.RECEIVING, ImportState.PUBLISHING):
                report.fail(report.error or "stopped")
            await asyncio.to_thread(upload.close)
            registry.finish(report, now=time.monotonic())

    async def _run(
        request: Request, upload: LeadListUpload, report: ImportReport, caller: Caller
    ) -> Response:
        headers = {
            "X-Import-Id": report.import_id,
            "Location": f"/v1/leads/import/{report.import_id}",
        }
        try:
            await _receive(
                paced_chunks(request, idle_timeout_s=settings.body_idle_timeout_s, pace=pace),
                upload,
            )
        except TooSlow as slow:
            report.fail(str(slow))
            log.info("import %s: the upload was too slow", report.import_id)
            return _report_response(408, report, {**headers, "Connection": "close"})
        except BadUpload as exc:
            report.fail(str(exc))
            # The spool goes now, not after the rest of the body is discarded.
            await asyncio.to_thread(upload.close)
            await _discard_rest(request)
            status = 413 if isinstance(exc, UploadTooLarge) else 400
            return _report_response(status, report, headers)
        except ClientDisconnect:
            report.fail("the client disconnected")
            log.info("import %s: client disconnected during upload", report.import_id)
            return _report_response(400, report, headers)
        report.state = ImportState.PUBLISHING
        received_at = datetime.now(UTC)

        def encoded_batch() -> list[EncodedEvent]:
            return upload.next_events(PUBLISH_BATCH, source=caller.source, received_at=received_at)

        def next_batch() -> asyncio.Future[list[EncodedEvent]]:
            return asyncio.ensure_future(asyncio.to_thread(encoded_batch))

        upcoming = next_batch()
        try:
            while events := await upcoming:
                # Build the next batch while this one waits for its acknowledgements.
                upcoming = next_batch()
                await asyncio.sleep(
                    admission.pace(caller, events=len(events), now=time.monotonic())
                )
                await publisher.publish(events)
                report.published += len(events)
        except BrokerUnavailable as exc:
            report.fail(f"event store unavailable: {exc}; upload the same file again")
            headers["Retry-After"] = str(settings.retry_after_s)
            return _report_response(503, report, headers)
        finally:
            # The worker thread must be done with the spool before it is closed.
            await asyncio.gather(upcoming, return_exceptions=True)
        MESSAGES_IN.labels("ingest", "/v1/leads/import").inc(report.published)
        report.state = ImportState.DONE
        return _report_response(200, report, headers)

    @router.get(
        "/v1/leads/import/{import_id}",
        summary="Progress (and, once done, the report) of an import on this ingest replica",
        response_model=None,
    )
    async def import_progress(request: Request, import_id: str) -> Response:
        caller = caller_of(request, reading=True)
        if isinstance(caller, Refusal):
            return refusal_response(caller)
        owner = None if caller.may("admin") else caller.key_name
        try:
            report = registry.get(import_id, owner=owner, now=time.monotonic())
        except ReportExpired:
            return _error(
                404,
                f"import {import_id!r} finished more than {settings.import_report_ttl_s:g} s "
                "ago; its report has expired (the upload's response holds it)",
            )
        if report is None:
            return _error(404, f"no import {import_id!r} on this ingest replica")
        return _report_response(200, report, {})

    return router


async def _receive(chunks: AsyncIterator[bytes], upload: LeadListUpload) -> None:
    """Stream the body into the upload in chunks of about _CHUNK bytes; parsing, normalising
    and spooling run in a worker thread so the event loop keeps serving other requests."""
    buffered: list[bytes] = []
    size = 0
    async for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        if size >= _CHUNK:
            await asyncio.to_thread(upload.feed, b"".join(buffered))
            buffered, size = [], 0
    if buffered:
        await asyncio.to_thread(upload.feed, b"".join(buffered))
    await asyncio.to_thread(upload.finish)


async def _discard_rest(request: Request) -> None:
    """Read (and drop) what is left of a refused body, so a streaming client gets to read the
    400 instead of a reset connection; past MAX_DISCARD the connection is simply closed."""
    discarded = 0
    try:
        async for chunk in request.stream():
            discarded += len(chunk)
            if discarded > MAX_DISCARD:
                return
    except (ClientDisconnect, RuntimeError):  # RuntimeError: the body was already read whole
        return


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def _file_format(given: str | None, content_type: str | None) -> FileFormat:
    if given is not None:
        if given not in ("csv", "ndjson"):
            raise _Refusal(_error(400, "format must be 'csv' or 'ndjson'"))
        return "csv" if given == "csv" else "ndjson"
    media = (content_type or "").split(";")[0].strip().lower()
    if media in _CSV_TYPES:
        return "csv"
    if media in _NDJSON_TYPES:
        return "ndjson"
    raise _Refusal(
        _error(
            415,
            f"Content-Type {media or '(none)'!r}: send text/csv or application/x-ndjson "
            "(or pass format=csv|ndjson)",
        )
    )


def _mapping(raw: str | None) -> dict[str, str | None] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Refusal(_error(400, f"mapping is not valid JSON: {exc}")) from None
    if not isinstance(value, dict) or not all(
        v is None or isinstance(v, str) for v in value.values()
    ):
        raise _Refusal(_error(400, 'mapping must be a JSON object {"header": "field" or null}'))
    return value


def _report_response(status: int, report: ImportReport, headers: dict[str, str]) -> Response:
    body: dict[str, Any] = {"success": status == 200, **report.as_json()}
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def _error(status: int, reason: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"success": False, "error": reason}, status_code=status, headers=headers)
