"""score's HTTP endpoints, served on its API port (`LEADFLOW_SCORE_API_PORT`, 8092) to clients
with a bearer token (`shared.service_api`; the scope each needs in brackets):

GET  /v1/leads/{lead_id or email}/explain   [leads:read] the score rule by rule, the stage
                                            history and the identity history
POST /v1/rules/simulate   [rules:simulate]  body: a candidate rules file (YAML). What it would
                                            change on the stored history: how many scores and
                                            stages move, who would become MQL, who would drop.
                                            Nothing is written. 400 names the line and field
                                            of a bad body; 409 while another simulation runs;
                                            503 past LEADFLOW_SCORE_SIMULATE_BUDGET_S.
GET  /v1/rules/rescore    [rules:simulate]  progress of the rescore under the running rules

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
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score.engine.explain import Explanation
from services.score.engine.rescoring import SimulationSummary
from services.score.engine.ruleset import RuleSet, RulesFileError
from services.score.lookups import (
    SimulationTimedOut,
    explain_lead,
    parse_candidate,
    simulate_stored,
)
from services.score.sweep import RescoreProgress
from shared.service_api import DENIED, ERROR, bounded_body, error_response, requires

MAX_RULES_BYTES = 1_000_000
"""A rules file is a few kilobytes; a larger body is refused before it is read whole."""


def score_api(
    *,
    rules: RuleSet,
    sessions: async_sessionmaker[AsyncSession],
    rescore: RescoreProgress,
    simulate_budget_s: float,
) -> APIRouter:
    """score's routes. `simulate_budget_s`: a simulation that runs longer stops with 503."""
    router = APIRouter(prefix="/v1", tags=["score"])
    simulating = asyncio.Lock()

    @router.get(
        "/leads/{key}/explain",
        response_model=Explanation,
        responses={404: ERROR, **DENIED},
        dependencies=[requires("leads:read")],
        summary="Why a lead (id or email) has its score: rule by rule, and its stages",
    )
    async def explain(key: str) -> Response:
        async with sessions() as session:
            explanation = await explain_lead(session, key, rules, datetime.now(UTC))
        if explanation is None:
            return error_response(404, f"no lead with id or email {key!r}")
        return Response(explanation.model_dump_json(), media_type="application/json")

    @router.post(
        "/rules/simulate",
        response_model=SimulationSummary,
        responses={400: ERROR, 409: ERROR, 413: ERROR, 503: ERROR, **DENIED},
        dependencies=[requires("rules:simulate")],
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
        body = await bounded_body(request, MAX_RULES_BYTES)
        if body is None:
            return error_response(413, f"a rules file is at most {MAX_RULES_BYTES} bytes")
        try:
            # validated in a worker thread: a large candidate must not stall the event loop
            candidate = await parse_candidate(body.decode("utf-8"))
        except UnicodeDecodeError:
            return error_response(400, "request body: a rules file is UTF-8 YAML text")
        except RulesFileError as exc:
            return error_response(400, str(exc))
        if simulating.locked():  # one at a time: a simulation reads every stored history
            return error_response(409, "a simulation is already running; try again when it is done")
        async with simulating:
            try:
                summary = await simulate_stored(
                    sessions,
                    live=rules,
                    candidate=candidate,
                    at=datetime.now(UTC),
                    deadline_s=simulate_budget_s,
                )
            except SimulationTimedOut as exc:
                return error_response(503, str(exc))
        return Response(summary.model_dump_json(), media_type="application/json")

    @router.get(
        "/rules/rescore",
        summary="Progress of the rescore under the running rules",
        responses=DENIED,
        dependencies=[requires("rules:simulate")],
    )
    async def rescore_progress() -> dict[str, Any]:
        return rescore.view()

    return router
