"""The health and metrics HTTP endpoint of every service.

`GET /healthz`: the process is alive (event loop answering). `GET /readyz`: the service can do
its work (broker and database reachable, partitions assigned); 503 with the failing checks
otherwise. `GET /metrics`: Prometheus text format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
"""Returns each check's name and whether it passes; ready when all pass."""

log = logging.getLogger(__name__)


def health_app(readiness: ReadinessCheck, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The three endpoints, plus a service's own read-only `routes` (e.g. score's explain)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *routes,
        ]
    )


class ServerWithoutSignals(uvicorn.Server):
    """The service owns SIGTERM/SIGINT (they start its drain); uvicorn must not take them."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HealthServer:
    """Serves `health_app` on its own port inside the service's event loop."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        readiness: ReadinessCheck,
        routes: Sequence[BaseRoute] = (),
    ) -> None:
        config = uvicorn.Config(
            health_app(readiness, routes),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
        self._server = ServerWithoutSignals(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="health-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the bind error
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
