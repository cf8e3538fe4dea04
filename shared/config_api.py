"""The HTTP routes of one versioned configuration kind (`shared.config_versions`), the same for
every service that owns one (score's rules at `/v1/rules`, router's routing at `/v1/routing`),
served on the service's authenticated API port (`shared.service_api`; scopes in brackets):

GET    /v1/<kind>                          [<kind>:read]     the live version, the versions
                                                             (newest first) and publications
GET    /v1/<kind>/versions/{version}       [<kind>:read]     one version (`live`: the live
                                                             one) with its document and YAML
POST   /v1/<kind>/check                    [<kind>:read]     validate a draft; nothing stored
POST   /v1/<kind>/versions                 [<kind>:publish]  save a draft as a version, and
                                                             with "publish": true make it live
POST   /v1/<kind>/versions/{v}/publish     [<kind>:publish]  make a version live (an earlier
                                                             one: a rollback)
POST   /v1/<kind>/simulations              [<kind>:simulate] 202: a draft's simulation starts
                                                             in the background (one at a time)
GET    /v1/<kind>/simulations/latest       [<kind>:simulate] the latest simulation
GET    /v1/<kind>/simulations/{id}         [<kind>:simulate] its progress, then its result
DELETE /v1/<kind>/simulations/{id}         [<kind>:simulate] cancel it

A **draft** is a JSON body `{"yaml": "<the document as YAML>"}` or `{"document": {...}}` (what a
form editor sends), with `"note"`, `"by"` and, to save, `"parent"` (the version the draft
started from). A draft that fails validation answers 400 with every problem: for YAML the line
and dotted field ("draft: line 14: rules.2.points: ..."), for a document the dotted field, which
a form maps back to its input. It is never stored.

**Publishing** from a draft (`"publish": true`) or of a version takes `expected_live` (for a
draft: its `parent`), and answers 409 if another version was published since: two editors who
started from the same version cannot overwrite each other. Without `expected_live` a version
is published whatever is live (an operator's rollback).

**Who**: the client's name (from its token) is recorded as the author or publisher; a client
acting for a person (the console) sends `"by"`, recorded as "<by> via <client>".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, Generic, TypeVar

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config_files import (
    MAX_DOCUMENT_CHARS,
    ConfigFileError,
    document_yaml,
    parse_yaml_document,
)
from shared.config_versions import LiveChanged, VersionedConfig
from shared.db import unit_of_work
from shared.service_api import DENIED, ERROR, bounded_body, error_response, requires
from shared.settings import Scope
from shared.simulations import Progress, SimulationBusy, Simulations

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

MAX_BODY_BYTES = 2 * MAX_DOCUMENT_CHARS
"""A draft's body: a document at the YAML limit, written as JSON with its escapes."""
MAX_TEXT = 2000
"""A note or a person's name is short text."""

Simulate = Callable[[T, Progress], Awaitable[dict[str, Any]]]
"""A service's simulation of a valid draft (parsed): the work of `shared.simulations`."""


class Draft(Generic[M]):
    """A request's draft, parsed: the document as stored and the validated configuration."""

    def __init__(self, document: dict[str, Any], parsed: M, fields: dict[str, Any]) -> None:
        self.document = document
        self.parsed = parsed
        self.fields = fields  # the body's other fields: note, by, parent, publish, ...


class BadDraft(Exception):
    """A body that is no usable draft; the message is the 400's reason."""


class ConfigRoutes(Generic[M]):
    """What `config_api` needs of a kind: the store, how to validate, how to simulate.

    `model`: the document's model (its validation is the kind's one validator, for files, YAML
    drafts and form drafts alike); `version_field`: the field the store stamps (`VersionedConfig`
    `stamp`), filled with a placeholder before a draft is validated."""

    def __init__(
        self,
        *,
        name: str,
        config: VersionedConfig[M],
        model: type[M],
        error: type[ConfigFileError],
        scopes: tuple[Scope, Scope, Scope],
        simulate: Simulate[M],
        version_field: str = "version",
    ) -> None:
        self.name = name
        self.config = config
        self.model = model
        self.error = error
        self.read_scope, self.publish_scope, self.simulate_scope = scopes
        self.simulate = simulate
        self.version_field = version_field

    def draft(self, body: bytes) -> Draft[M]:
        """Parse a draft body (CPU work bounded by its size: run it in a thread)."""
        try:
            fields = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadDraft(
                'the body is JSON: {"yaml": "..."} or {"document": {...}}, with "note", "by"'
            ) from None
        if not isinstance(fields, dict):
            raise BadDraft('the body is a JSON object: {"yaml": "..."} or {"document": {...}}')
        for key in ("note", "by", "parent", "expected_live"):
            value = fields.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
                raise BadDraft(f"{key}: a string of at most {MAX_TEXT} characters")
        text, document = fields.pop("yaml", None), fields.pop("document", None)
        if (text is None) == (document is None):
            raise BadDraft('give the draft as "yaml" (text) or as "document" (an object)')
        try:
            if text is not None:
                if not isinstance(text, str):
                    raise BadDraft('"yaml" is the document as YAML text')
                document, _ = parse_yaml_document(
                    text,
                    self.model,
                    source="draft",
                    error=self.error,
                    # a draft needs no version label: it gets its version when saved
                    defaults={self.version_field: "draft"},
                )
            if not isinstance(document, dict):
                raise BadDraft('"document" is a JSON object')
            # A draft is no version yet, whatever label it carries (a copy of the live one
            # says "3"): it is "draft" until saved, when the store stamps its id.
            document = {**document, self.version_field: "draft"}
            return Draft(document, self.model.model_validate(document), fields)
        except ValidationError as exc:
            raise BadDraft(
                "draft: "
                + "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                    for e in exc.errors(include_url=False)
                )
            ) from None
        except ConfigFileError as exc:
            raise BadDraft(str(exc)) from None


def config_api(
    routes: ConfigRoutes[M],
    *,
    sessions: async_sessionmaker[AsyncSession],
    simulations: Simulations,
) -> APIRouter:
    """The routes of the module doc for one kind. (The scope of a route that needs the client's
    name is its parameter's default: an `Annotated` annotation naming this function's locals
    could not be resolved by FastAPI under postponed annotations.)"""
    name, config = routes.name, routes.config
    router = APIRouter(prefix=f"/v1/{name}", tags=[name])
    read, publish_scope, simulate_scope = (
        routes.read_scope,
        routes.publish_scope,
        routes.simulate_scope,
    )

    async def draft_of(request: Request) -> Draft[M] | Response:
        body = await bounded_body(request, MAX_BODY_BYTES)
        if body is None:
            return error_response(413, f"a draft is at most {MAX_BODY_BYTES} bytes")
        try:
            return await asyncio.to_thread(routes.draft, body)
        except BadDraft as exc:
            return error_response(400, str(exc))

    @router.get("", summary=f"The {name} versions, the live one and the publications",
                responses=DENIED, dependencies=[requires(read)])  # fmt: skip
    async def overview() -> dict[str, Any]:
        async with sessions() as session:
            live = await config.live_version(session)
            versions = await config.versions(session)
            publications = await config.publications(session, limit=50)
        return {
            "live": live,
            "versions": [asdict(v) for v in versions],
            "publications": [asdict(p) for p in publications],
        }

    @router.get("/versions/{version}", summary=f"One {name} version with its document",
                responses={404: ERROR, **DENIED}, dependencies=[requires(read)])  # fmt: skip
    async def one(version: str) -> Response:
        async with sessions() as session:
            if version == "live":
                version = await config.live_version(session) or ""
            found = await config.get(session, version)
        if found is None or found.document is None:
            return error_response(404, f"no {name} version {version!r}")
        view = {**asdict(found), "yaml": document_yaml(found.document)}
        return Response(orjson.dumps(view), media_type="application/json")

    @router.post("/check", summary=f"Validate a {name} draft (nothing is stored)",
                 responses={400: ERROR, 413: ERROR, **DENIED},
                 dependencies=[requires(read)])  # fmt: skip
    async def check(request: Request) -> Response:
        draft = await draft_of(request)
        if isinstance(draft, Response):
            return draft
        return JSONResponse({"valid": True, "document": draft.document})

    @router.post("/versions", status_code=201, summary=f"Save a {name} draft (and publish it)",
                 responses={400: ERROR, 409: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def save(request: Request, client: str = requires(publish_scope)) -> Response:
        draft = await draft_of(request)
        if isinstance(draft, Response):
            return draft
        fields = draft.fields
        who = author_of(fields.get("by"), client)
        parent = fields.get("parent")
        try:
            async with unit_of_work(sessions) as session:
                saved = await config.save(
                    session,
                    document=draft.document,
                    author=who,
                    note=fields.get("note") or "",
                    parent=parent,
                )
                publication = None
                if fields.get("publish") is True:
                    publication = await config.publish(
                        session,
                        saved.version,
                        by=who,
                        note=fields.get("note") or "",
                        expected_live=fields.get("expected_live", parent),
                    )
        except LiveChanged as exc:
            return error_response(409, str(exc))
        except (ValueError, LookupError) as exc:
            return error_response(400, str(exc))
        answer = {
            "version": {**asdict(saved), "document": None},
            "publication": asdict(publication) if publication else None,
        }
        return Response(orjson.dumps(answer), status_code=201, media_type="application/json")

    @router.post("/versions/{version}/publish",
                 summary=f"Make a {name} version live (an earlier one: a rollback)",
                 responses={400: ERROR, 404: ERROR, 409: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def publish(
        version: str, request: Request, client: str = requires(publish_scope)
    ) -> Response:
        body = await bounded_body(request, 4 * MAX_TEXT)
        if body is None:
            return error_response(413, "the body is a short JSON object")
        try:
            fields = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            fields = None
        if not isinstance(fields, dict) or not all(
            isinstance(fields.get(k, ""), str | None) for k in ("note", "by", "expected_live")
        ):
            return error_response(
                400, 'the body is JSON: {"note": "why", "expected_live": "3", "by": "who"}'
            )
        who = author_of(fields.get("by"), client)
        kwargs: dict[str, Any] = {}
        if "expected_live" in fields:
            kwargs["expected_live"] = fields["expected_live"]
        try:
            async with unit_of_work(sessions) as session:
                publication = await config.publish(
                    session, version, by=who, note=fields.get("note") or "", **kwargs
                )
        except LiveChanged as exc:
            return error_response(409, str(exc))
        except LookupError as exc:
            return error_response(404, str(exc))
        return Response(orjson.dumps(asdict(publication)), media_type="application/json")

    @router.post("/simulations", status_code=202,
                 summary=f"Simulate a {name} draft on the stored history (in the background)",
                 responses={400: ERROR, 409: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def simulate(request: Request, client: str = requires(simulate_scope)) -> Response:
        draft = await draft_of(request)
        if isinstance(draft, Response):
            return draft
        candidate = draft.parsed
        try:
            state = await simulations.start(
                kind=name,
                by=author_of(draft.fields.get("by"), client),
                work=lambda progress: routes.simulate(candidate, progress),
            )
        except SimulationBusy as exc:
            return error_response(409, str(exc))
        return JSONResponse(state.view(), status_code=202)

    @router.get("/simulations/latest", summary=f"The latest {name} simulation",
                responses={404: ERROR, **DENIED}, dependencies=[requires(simulate_scope)])  # fmt: skip
    async def latest() -> Response:
        state = await simulations.latest(name)
        if state is None:
            return error_response(404, f"no {name} simulation yet")
        return JSONResponse(state.view())

    @router.get("/simulations/{simulation_id}", summary="A simulation's progress and result",
                responses={404: ERROR, **DENIED}, dependencies=[requires(simulate_scope)])  # fmt: skip
    async def simulation(simulation_id: str) -> Response:
        state = await simulations.get(simulation_id)
        if state is None or state.kind != name:
            return error_response(404, f"no {name} simulation {simulation_id!r}")
        return JSONResponse(state.view())

    @router.delete("/simulations/{simulation_id}", summary="Cancel a running simulation",
                   responses={404: ERROR, **DENIED}, dependencies=[requires(simulate_scope)])  # fmt: skip
    async def cancel(simulation_id: str) -> Response:
        state = await simulations.get(simulation_id)
        if state is None or state.kind != name:
            return error_response(404, f"no {name} simulation {simulation_id!r}")
        cancelled = await simulations.cancel(simulation_id)
        assert cancelled is not None
        return JSONResponse(cancelled.view())

    return router


def author_of(by: str | None, client: str) -> str:
    """Who a change is recorded as: the person a client acts for, with the client's name ("ada
    via console"), or the client alone."""
    return f"{by} via {client}" if by else client
