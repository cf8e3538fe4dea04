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
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.score.engine.ruleset import RuleSet, RulesFileError, parse_rules
from services.score.lookups import explain_lead, simulate_stored
from services.score.sweep import RescoreProgress

MAX_RULES_BYTES = 1_000_000
"""A rules file is a few kilobytes; a larger body is refused before it is read whole."""


def score_routes(
    *,
    rules: RuleSet,
    sessions: async_sessionmaker[AsyncSession],
    rescore: RescoreProgress,
) -> Sequence[BaseRoute]:
    simulating = asyncio.Lock()

    async def explain(request: Request) -> Response:
        key = request.path_params["key"]
        async with sessions() as session:
            explanation = await explain_lead(session, key, rules, datetime.now(UTC))
        if explanation is None:
            return JSONResponse({"error": f"no lead with id or email {key!r}"}, status_code=404)
        return Response(explanation.model_dump_json(), media_type="application/json")

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

    async def rescore_progress(_: Request) -> Response:
        return JSONResponse(rescore.view())

    return [
        Route("/v1/leads/{key}/explain", explain),
        Route("/v1/rules/simulate", simulate, methods=["POST"]),
        Route("/v1/rules/rescore", rescore_progress),
    ]


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)
