"""score's read-only HTTP endpoint, served beside /healthz on the health port:

GET /v1/leads/{lead_id or email}/explain   the score rule by rule and the stage history
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.score.engine.ruleset import RuleSet
from services.score.lookups import explain_lead


def explain_routes(
    rules: RuleSet, sessions: async_sessionmaker[AsyncSession]
) -> Sequence[BaseRoute]:
    async def explain(request: Request) -> Response:
        key = request.path_params["key"]
        async with sessions() as session:
            explanation = await explain_lead(session, key, rules, datetime.now(UTC))
        if explanation is None:
            return JSONResponse({"error": f"no lead with id or email {key!r}"}, status_code=404)
        return Response(explanation.model_dump_json(), media_type="application/json")

    return [Route("/v1/leads/{key}/explain", explain)]
