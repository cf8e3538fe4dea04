"""router's HTTP endpoints, served on its API port (`LEADFLOW_ROUTER_API_PORT`, 8093) to clients
with a bearer token holding the scope in brackets (`shared.service_api`):

GET  /v1/leads/{lead_id or email}/routing  [leads:read]        the lead's routing history: every
                                                               decision (with its SLA outcome
                                                               and routing version), every change
                                                               not routed with its reason, every
                                                               SLA breach
/v1/routing...                             [routing:*]         the routing's versions: live one,
                                                               history, check, save, publish,
                                                               simulate a draft on the MQLs of
                                                               the last 30 days (`shared.
                                                               config_api`, `simulation_runs`)
GET  /v1/routing/reps                      [routing:read]      every rep of the live routing and
                                                               whether they are away today (a
                                                               list; the live version: GET
                                                               /v1/routing)
POST /v1/routing/reps/{rep_id}             [routing:publish]   change one rep (active, out of
                                                               office, weight, daily cap) and
                                                               publish it as a new version
POST /v1/routing/preview                   [routing:simulate]  a scoring change's load per team
                                                               and rep under the live routing

A rep change is a draft of its own: built from the live version, validated, saved with the live
version as parent and published over it in one transaction (`expected_live`: 409 if someone
published since). A preview takes `{"gained": [lead ids], "lost": [lead ids]}` (at most
`PREVIEW_AT_MOST` each; see `load_preview` for how each is counted); `unknown` counts the gained
leads the router stored no stage change for and the lost leads with no open sdr decision.
Nothing live (or a live version that no longer validates) answers 409. Errors are
`{"error": "<reason>"}`.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router import repository
from services.router.load_preview import CurrentOwner, preview_load
from services.router.rep_availability import RepChange, UnknownRep, rep_roster, with_rep_changed
from services.router.repository import lead_history
from services.router.routing_config import RoutingConfig, RoutingFileError
from services.router.routing_versions import NoLiveRouting, live_routing
from services.router.simulation_runs import simulate_draft
from shared.config_api import MAX_TEXT, ConfigRoutes, author_of, config_api
from shared.config_versions import LiveChanged, VersionedConfig
from shared.contracts import LifecycleChanged
from shared.db import unit_of_work
from shared.service_api import DENIED, ERROR, bounded_body, error_response, requires
from shared.simulations import Simulations

PREVIEW_AT_MOST = 10_000
"""Lead ids per list of a preview: what score's rules simulation lists at most."""
LEAD_ID_CHARS = 200
MAX_PREVIEW_BYTES = 2 * PREVIEW_AT_MOST * (LEAD_ID_CHARS + 4) + 1024
"""Two full lists of the longest ids, quoted and separated: anything longer answers 413."""
MAX_REP_CHANGE_BYTES = 64 * 1024
"""A rep change: four fields, a note, a name, a list of absences."""

LeadId = Annotated[str, StringConstraints(min_length=1, max_length=LEAD_ID_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class PreviewRequest(BaseModel):
    """Leads that would become MQL (`gained`) and drop below MQL (`lost`), by lead id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gained: list[LeadId] = Field(default_factory=list, max_length=PREVIEW_AT_MOST)
    lost: list[LeadId] = Field(default_factory=list, max_length=PREVIEW_AT_MOST)


class RepChangeRequest(RepChange):
    """A rep change (`RepChange`), why and by whom, over the live version the person saw."""

    note: Text
    by: Text
    expected_live: Text


def router_api(
    sessions: async_sessionmaker[AsyncSession],
    *,
    routing: VersionedConfig[RoutingConfig],
    simulations: Simulations,
) -> list[APIRouter]:
    """The router's routes (module doc): the lead history, the routing versions
    (`config_api`), the reps and the preview."""
    versions = config_api(
        ConfigRoutes(
            name="routing",
            config=routing,
            model=RoutingConfig,
            error=RoutingFileError,
            scopes=("routing:read", "routing:publish", "routing:simulate"),
            simulate=lambda draft, progress: simulate_draft(
                draft, progress, sessions=sessions, routing=routing
            ),
        ),
        sessions=sessions,
        simulations=simulations,
    )
    return [_history_routes(sessions), versions, _routing_routes(sessions, routing=routing)]


def _history_routes(sessions: async_sessionmaker[AsyncSession]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["router"])

    @router.get(
        "/leads/{key}/routing",
        summary="A lead's routing history (lead id or email)",
        responses={404: ERROR, **DENIED},
        dependencies=[requires("leads:read")],
    )
    async def history(key: str) -> Response:
        async with sessions() as session:
            found = await lead_history(session, key)
        if found is None:
            return error_response(404, f"the router never saw lead {key!r}")
        return JSONResponse(found)

    return router


def _routing_routes(
    sessions: async_sessionmaker[AsyncSession], *, routing: VersionedConfig[RoutingConfig]
) -> APIRouter:
    router = APIRouter(prefix="/v1/routing", tags=["routing"])

    @router.get("/reps", summary="Every rep of the live routing, and who is away today",
                responses={409: ERROR, **DENIED},
                dependencies=[requires("routing:read")])  # fmt: skip
    async def reps() -> Response:
        try:
            async with sessions() as session:
                _, config = await live_routing(routing, session)
        except NoLiveRouting as exc:
            return error_response(409, str(exc))
        return JSONResponse(rep_roster(config, now=datetime.now(UTC)))

    @router.post("/reps/{rep_id}",
                 summary="Change one rep (active, out of office, weight, daily cap) and publish",
                 responses={400: ERROR, 404: ERROR, 409: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def change_rep(
        rep_id: str, request: Request, client: str = requires("routing:publish")
    ) -> Response:
        body = await bounded_body(request, MAX_REP_CHANGE_BYTES)
        if body is None:
            return error_response(413, f"a rep change is at most {MAX_REP_CHANGE_BYTES} bytes")
        try:
            asked = RepChangeRequest.model_validate_json(body)
        except ValidationError as exc:
            return error_response(400, "body: " + _problems(exc))
        who = author_of(asked.by, client)
        try:
            async with unit_of_work(sessions) as session:
                live_version = await routing.live_version(session)
                if live_version != asked.expected_live:
                    raise LiveChanged(
                        kind=routing.kind, expected=asked.expected_live, live=live_version
                    )
                live = await routing.get(session, live_version)
                assert live is not None  # the live version exists: it is live
                assert live.document is not None  # `get` reads the document
                document = with_rep_changed(live.document, rep_id, asked)
                saved = await routing.save(
                    session, document=document, author=who, note=asked.note, parent=live_version
                )
                publication = await routing.publish(
                    session, saved.version, by=who, note=asked.note, expected_live=live_version
                )
        except UnknownRep as exc:
            return error_response(404, str(exc))
        except LiveChanged as exc:
            return error_response(409, str(exc))
        except ValidationError as exc:
            return error_response(400, f"rep {rep_id}: " + _problems(exc))
        answer = {
            "version": {**asdict(saved), "document": None},
            "publication": asdict(publication),
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    @router.post("/preview",
                 summary="How a scoring change would load each team and rep (live routing)",
                 responses={400: ERROR, 409: ERROR, 413: ERROR, **DENIED},
                 dependencies=[requires("routing:simulate")])  # fmt: skip
    async def preview(request: Request) -> Response:
        body = await bounded_body(request, MAX_PREVIEW_BYTES)
        if body is None:
            return error_response(413, f"a preview is at most {MAX_PREVIEW_BYTES} bytes")
        try:
            asked = PreviewRequest.model_validate_json(body)
        except ValidationError as exc:
            return error_response(400, "body: " + _problems(exc))
        gained, lost = list(dict.fromkeys(asked.gained)), list(dict.fromkeys(asked.lost))
        try:
            async with sessions() as session:
                version, config = await live_routing(routing, session)
                changes = await repository.latest_changes_of_leads(session, gained)
                owners = await repository.open_sdr_owners_of_leads(session, lost)
        except NoLiveRouting as exc:
            return error_response(409, str(exc))
        now = datetime.now(UTC)
        loads = await asyncio.to_thread(
            _preview,
            config=config,
            gained=[changes[lead] for lead in gained if lead in changes],
            lost=[owners[lead] for lead in lost if lead in owners],
            now=now,
        )
        answer = {
            "routing_version": version,
            "at": now.isoformat(),
            "gained": {"leads": len(gained), "unknown": len(gained) - len(changes)},
            "lost": {"leads": len(lost), "unknown": len(lost) - len(owners)},
            **loads,
        }
        return JSONResponse(answer)

    return router


def _preview(
    *,
    config: RoutingConfig,
    gained: list[dict[str, Any]],
    lost: list[CurrentOwner],
    now: datetime,
) -> dict[str, Any]:
    """`preview_load` on the stored changes (parsed here: CPU, in the worker thread)."""
    return preview_load(
        config=config,
        gained=[LifecycleChanged.model_validate(change) for change in gained],
        lost=lost,
        now=now,
    )


def _problems(exc: ValidationError) -> str:
    """Every problem, with its dotted field: "teams.0.reps.1.weight: Input should be ..."."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )
