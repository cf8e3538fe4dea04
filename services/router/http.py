"""router's HTTP endpoint, served beside /healthz on the health port:

GET /v1/leads/{lead_id or email}/routing   the lead's routing history: every decision (with
                                           its SLA outcome: closed_at, closed_reason), every
                                           suppression with its reason, every SLA breach
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.router.repository import lead_history


def router_routes(sessions: async_sessionmaker[AsyncSession]) -> Sequence[BaseRoute]:
    async def history(request: Request) -> Response:
        key = request.path_params["key"]
        async with sessions() as session:
            found = await lead_history(session, key)
        if found is None:
            return JSONResponse({"error": f"the router never saw lead {key!r}"}, status_code=404)
        return JSONResponse(found)

    return [Route("/v1/leads/{key}/routing", history, methods=["GET"])]
