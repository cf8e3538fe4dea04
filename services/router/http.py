"""router's HTTP endpoint, served on its API port (`LEADFLOW_ROUTER_API_PORT`, 8093) to clients
with a bearer token holding the scope `leads:read` (`shared.service_api`):

GET /v1/leads/{lead_id or email}/routing   the lead's routing history: every decision (with
                                           its SLA outcome: closed_at, closed_reason), every
                                           change not routed with its reason (`suppressions`:
                                           a suppression, or history from before the backfill
                                           horizon), every SLA breach
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.router.repository import lead_history
from shared.service_api import DENIED, ERROR, error_response, requires


def router_api(sessions: async_sessionmaker[AsyncSession]) -> APIRouter:
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
