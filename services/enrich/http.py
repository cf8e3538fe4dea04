"""enrich's HTTP endpoints, served on its API port (`LEADFLOW_ENRICH_API_PORT`, 8091) to clients
with a bearer token holding the scope in brackets (`shared.service_api`; a website's write key
is not a bearer token of any client and gets 401):

POST /v1/erasures                 [privacy:erase]  erase a person: `{"email" | "user_id" |
                                                   "anonymous_id": ..., "reason": ..., "by":
                                                   ...}` -> 202 with the request id and status
GET  /v1/erasures/{request_id}    [privacy:read]   a request's status, per service
GET  /v1/erasures?limit=N         [privacy:read]   the audit: the newest requests
POST /v1/unsuppress              [privacy:erase]  track a person again: `{"email" | ...,
                                                   "by": ...}` lifts every do-not-track entry
                                                   of the requests that named the identifier

Answers hold no personal data: an identifier appears only as its keyed hash. A malformed
identifier or reason answers 400 with the reason; errors are `{"error": "<reason>"}`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.enrich import erasing, erasure_store
from services.enrich.erasures import BadRequest, identifier_of
from shared.commands import CommandSender
from shared.config_api import author_of
from shared.db import unit_of_work
from shared.service_api import DENIED, ERROR, bounded_body, error_response, requires

MAX_BODY = 4096
M = TypeVar("M", bound=BaseModel)
Text = Annotated[str, StringConstraints(max_length=1000)]


class Named(BaseModel):
    """A person named by exactly one identifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: Text | None = None
    user_id: Text | None = None
    anonymous_id: Text | None = None
    by: Text | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> Named:
        given = [kind for kind, value in self.identifiers() if value is not None]
        if len(given) != 1:
            raise ValueError("name the person by exactly one of email, user_id, anonymous_id")
        return self

    def identifiers(self) -> list[tuple[str, str | None]]:
        return [
            ("email", self.email),
            ("user_id", self.user_id),
            ("anonymous_id", self.anonymous_id),
        ]

    @property
    def identifier(self) -> tuple[str, str]:
        return next((kind, value) for kind, value in self.identifiers() if value is not None)


class ErasureRequest(Named):
    reason: Text


def enrich_api(
    sessions: async_sessionmaker[AsyncSession], *, commands: CommandSender, key: bytes
) -> list[APIRouter]:
    router = APIRouter(prefix="/v1", tags=["privacy"])

    @router.post("/erasures", status_code=202,
                 summary="Erase a person everywhere (by email, userId or anonymousId)",
                 responses={400: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def erase(request: Request, client: str = requires("privacy:erase")) -> Response:
        asked = await _body(request, ErasureRequest)
        if isinstance(asked, Response):
            return asked
        kind, value = asked.identifier
        try:
            request_id = await erasing.take_request(
                sessions=sessions,
                commands=commands,
                key=key,
                kind=kind,
                value=value,
                reason=asked.reason,
                requested_by=author_of(asked.by, client),
                at=datetime.now(UTC),
            )
        except BadRequest as exc:
            return error_response(400, str(exc))
        async with sessions() as session:
            record = await erasure_store.get_request(session, request_id)
        assert record is not None
        return JSONResponse(erasing.described(record), status_code=202)

    @router.get("/erasures/{request_id}", summary="An erasure request's status, per service",
                responses={404: ERROR, **DENIED},
                dependencies=[requires("privacy:read")])  # fmt: skip
    async def status(request_id: str) -> Response:
        async with sessions() as session:
            record = await erasure_store.get_request(session, request_id)
        if record is None:
            return error_response(404, f"no erasure request {request_id!r}")
        return JSONResponse(erasing.described(record))

    @router.get("/erasures", summary="The erasure audit: the newest requests first",
                responses=DENIED, dependencies=[requires("privacy:read")])  # fmt: skip
    async def audit(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        async with sessions() as session:
            records = await erasure_store.newest_requests(session, limit=limit)
        return JSONResponse([erasing.described(record) for record in records])

    @router.post("/unsuppress",
                 summary="Track a person again: lift the do-not-track entries of their erasures",
                 responses={400: ERROR, 404: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def lift(request: Request, client: str = requires("privacy:erase")) -> Response:
        asked = await _body(request, Named)
        if isinstance(asked, Response):
            return asked
        try:
            identity = identifier_of(*asked.identifier)
        except BadRequest as exc:
            return error_response(400, str(exc))
        async with unit_of_work(sessions) as session:
            lifted = await erasure_store.lift_do_not_track(
                session,
                identifier_hash=erasing.hash_of(key, identity),
                by=author_of(asked.by, client),
            )
        if not lifted:
            return error_response(
                404, f"that {identity.kind.value} is not on the do-not-track list"
            )
        return JSONResponse({"lifted_requests": lifted})

    return [router]


async def _body(request: Request, model: type[M]) -> M | Response:
    body = await bounded_body(request, MAX_BODY)
    if body is None:
        return error_response(413, f"a request is at most {MAX_BODY} bytes")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        return error_response(
            400,
            "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_url=False)
            ),
        )
