"""score's model endpoints, beside its rules endpoints on the API port (bearer token; the scope
each needs in brackets):

GET  /v1/models                        [models:read]    versions (newest first), the live one,
                                                        the latest training runs, and how far
                                                        the stored leads are rescored under it
GET  /v1/models/{version}              [models:read]    one model: metrics beside the rules',
                                                        reliability table, curves, weights,
                                                        notes (`latest`, `live` or a number)
GET  /v1/models/{version}/evaluation.svg  [models:read] its ROC, gains and calibration picture
GET  /v1/models/{version}/proposed-rules  [models:read] a rules file (YAML) whose points follow
                                                        what it learned, from the live rules:
                                                        simulate it as a draft
                                                        (POST /v1/rules/simulations)
POST /v1/models/train                  [models:train]   202 {"run_id"}: a training starts in a
                                                        process of its own; 409 while one runs
POST /v1/models/{version}/publish      [models:publish] body {"note": "..."} (optional): it
                                                        goes live in every replica at their
                                                        next batch; the stored leads get their
                                                        likelihood in the background
The client's name (from its token) is recorded as who trained or published.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.learning.proposals import NothingToPropose, propose_rules
from services.score.learning.runs import (
    MODELS,
    parse_model,
    publish,
    resolve_version,
    start_training_process,
)
from services.score.rules_versions import live_rules
from services.score.sweep import RescoreProgress
from shared.db import unit_of_work
from shared.service_api import DENIED, ERROR, bounded_body, error_response, requires

MAX_NOTE_BYTES = 10_000


def models_api(
    *, sessions: async_sessionmaker[AsyncSession], rescore: RescoreProgress
) -> APIRouter:
    """The model routes; `rescore`: the model rescore sweep's progress (shown with the list)."""
    router = APIRouter(prefix="/v1/models", tags=["models"])

    @router.get("", summary="The trained models and the latest training runs", responses=DENIED,
                dependencies=[requires("models:read")])  # fmt: skip
    async def models() -> dict[str, Any]:
        async with sessions() as session:
            live = await MODELS.live(session)
            versions = await MODELS.versions(session)
            runs = await repository.trainings(session, limit=20)
        return {
            "live": live[0] if live is not None else None,
            "versions": [asdict(version) for version in versions],
            "trainings": [asdict(run) for run in runs],
            "rescore": rescore.view(),
        }

    @router.get("/{version}", summary="One model: evaluation, weights, notes",
                responses={404: ERROR, **DENIED}, dependencies=[requires("models:read")])  # fmt: skip
    async def model(version: str) -> Response:
        async with sessions() as session:
            found = await resolve_version(session, version)
        if found is None:
            return error_response(404, f"no model version {version!r}")
        return Response(orjson.dumps(asdict(found)), media_type="application/json")

    @router.get("/{version}/evaluation.svg", summary="ROC, gains and calibration (SVG)",
                responses={404: ERROR, **DENIED}, dependencies=[requires("models:read")])  # fmt: skip
    async def picture(version: str) -> Response:
        async with sessions() as session:
            found = await resolve_version(session, version)
        if found is None or found.document is None:
            return error_response(404, f"no model version {version!r}")
        # matplotlib (about 40 MB) is loaded by the first picture asked for, not at start-up;
        # drawn in a worker thread: a few hundred ms, not the event loop's
        from services.score.learning.picture import evaluation_svg

        svg = await asyncio.to_thread(
            evaluation_svg, parse_model(found.document), version=found.version
        )
        return Response(svg, media_type="image/svg+xml")

    @router.get("/{version}/proposed-rules", summary="A rules file following what it learned",
                responses={404: ERROR, 409: ERROR, **DENIED},
                dependencies=[requires("models:read")])  # fmt: skip
    async def proposed_rules(version: str) -> Response:
        async with sessions() as session:
            found = await resolve_version(session, version)
            rules = await live_rules(session)
        if found is None or found.document is None:
            return error_response(404, f"no model version {version!r}")
        try:
            proposal = propose_rules(
                parse_model(found.document), rules, model_version=found.version
            )
        except NothingToPropose as exc:
            return error_response(409, str(exc))
        return Response(proposal.text, media_type="application/yaml")

    @router.post("/train", status_code=202, summary="Start a training (own process)",
                 responses={409: ERROR, **DENIED})  # fmt: skip
    async def train(client: Annotated[str, requires("models:train")]) -> Response:
        try:
            run_id = await start_training_process(
                sessions, requested_by=client, now=datetime.now(UTC)
            )
        except RuntimeError as exc:
            return error_response(409, str(exc))
        return JSONResponse({"run_id": run_id}, status_code=202)

    @router.post("/{version}/publish", summary="Make a model live (an earlier one: a rollback)",
                 responses={400: ERROR, 404: ERROR, 413: ERROR, **DENIED})  # fmt: skip
    async def publish_model(
        version: str, request: Request, client: Annotated[str, requires("models:publish")]
    ) -> Response:
        body = await bounded_body(request, MAX_NOTE_BYTES)
        if body is None:
            return error_response(
                413, f"the body is a short JSON object, at most {MAX_NOTE_BYTES} bytes"
            )
        note = ""
        if body.strip():
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return error_response(400, 'the body is JSON: {"note": "why"}')
            if not isinstance(parsed, dict) or not isinstance(parsed.get("note", ""), str):
                return error_response(400, 'the body is JSON: {"note": "why"}')
            note = parsed.get("note", "")
        async with unit_of_work(sessions) as session:
            try:
                publication = await publish(session, version, by=client, note=note)
            except LookupError as exc:
                return error_response(404, str(exc))
        return Response(orjson.dumps(asdict(publication)), media_type="application/json")

    return router
