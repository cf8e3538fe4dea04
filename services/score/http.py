"""score's HTTP endpoints, served beside /healthz on the health port:

GET  /v1/leads/{lead_id or email}/explain   the score rule by rule and the stage history
POST /v1/rules/simulate                     body: a candidate rules file (YAML). What it would
                                            change on the stored history: how many scores and
                                            stages move, who would become MQL, who would drop.
                                            Nothing is written. 400 names the line and field
                                            of a bad body; 409 while another simulation runs.
GET  /v1/rules/rescore                      progress of the rescore under the running rules

A candidate goes live as the rules file (`LEADFLOW_SCORE_RULES_FILE`, the `scoring-rules`
ConfigMap) with a restart: every replica then scores with it, and the rescore sweep rescores the
stored leads in the background (progress above). Rules are not swapped through HTTP: replicas
holding different versions would rescore leads back and forth.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.engine.explain import Explanation
from services.score.engine.rescoring import SimulationSummary
from services.score.engine.ruleset import RuleSet, RulesFileError, parse_rules
from services.score.lookups import explain_lead, simulate_stored
from services.score.sweep import RescoreProgress

MAX_RULES_BYTES = 1_000_000
"""A rules file is a few kilobytes; a larger body is refused before it is read whole."""

_ERROR = {"content": {"application/json": {"example": {"error": "the reason"}}}}


def score_api(
    *,
    rules: RuleSet,
    sessions: async_sessionmaker[AsyncSession],
    rescore: RescoreProgress,
) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["score"])
    simulating = asyncio.Lock()

    @router.get(
        "/leads/{key}/explain",
        response_model=Explanation,
        responses={404: _ERROR},
        summary="Why a lead (id or email) has its score: rule by rule, and its stages",
    )
    async def explain(key: str) -> Response:
        async with sessions() as session:
            explanation = await explain_lead(session, key, rules, datetime.now(UTC))
        if explanation is None:
            return _error(404, f"no lead with id or email {key!r}")
        return Response(explanation.model_dump_json(), media_type="application/json")

    @router.post(
        "/rules/simulate",
        response_model=SimulationSummary,
        responses={400: _ERROR, 409: _ERROR, 413: _ERROR},
        summary="What a candidate rules file would change on the stored leads",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/yaml": {"schema": {"type": "string"}}},
                "description": "a scoring rules file (YAML), as services/score/rules/default.yaml",
            }
        },
    )
    async def simulate(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_RULES_BYTES:
                return _error(413, f"a rules file is at most {MAX_RULES_BYTES} bytes")
        try:
            candidate = parse_rules(body.decode("utf-8"), source="request body")
        except UnicodeDecodeError:
            return _error(400, "request body: a rules file is UTF-8 YAML text")
        except RulesFileError as exc:
            return _error(400, str(exc))
        if simulating.locked():  # one at a time: a simulation reads every stored history
            return _error(409, "a simulation is already running; try again when it is done")
        async with simulating:
            summary = await simulate_stored(
                sessions, live=rules, candidate=candidate, at=datetime.now(UTC)
            )
        return Response(summary.model_dump_json(), media_type="application/json")

    @router.get("/rules/rescore", summary="Progress of the rescore under the running rules")
    async def rescore_progress() -> dict[str, Any]:
        return rescore.view()

    return router


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)
