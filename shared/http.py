"""HTTP for every service: health, readiness and metrics routes, offline API docs, and a server
that runs inside the service's own event loop.

- `health_router(readiness)`: `GET /healthz` (the process is alive), `GET /readyz` (the service
  can do its work: broker and database reachable, partitions assigned; 503 with the failing
  checks otherwise) and `GET /metrics` (Prometheus text format). Every service serves them: the
  consuming services on their health port, ingest on its API port.
- `create_api(...)`: a FastAPI application whose `/docs` works with no internet (inside a
  cluster): Swagger UI's assets come from the `swagger-ui-bundle` package, not from a CDN.
  With `docs=False` it serves neither `/docs` nor `/openapi.json` (ingest's public port in
  production: what an attacker would read first).
- `HttpServer`: uvicorn without its own signal handling (the service owns SIGTERM/SIGINT: they
  start its drain); a port already in use is a `PortInUse` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]
"""Returns each check's name and whether it passes; ready when all pass."""

log = logging.getLogger(__name__)

_DOCS_ASSETS = "/docs/assets"


def health_router(readiness: ReadinessCheck) -> APIRouter:
    """The three endpoints every service answers (left out of its OpenAPI document)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/readyz")
    async def readyz() -> Response:
        checks = await readiness()
        ready = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def create_api(
    *,
    title: str,
    summary: str,
    description: str = "",
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    docs: bool = True,
) -> FastAPI:
    """A FastAPI application with its OpenAPI document at `/openapi.json` and Swagger UI at
    `/docs`, served from this process (no CDN); with `docs=False`, neither."""
    app = FastAPI(
        title=title,
        summary=summary,
        description=description,
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    if not docs:
        return app
    app.mount(_DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon-32x32.png",
        )

    return app


class PortInUse(Exception):
    """The server's address is taken (another process, often the same service started twice)."""


class _ServerWithoutSignals(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serves an ASGI application on `host:port` inside the running event loop.

    `start` returns once the socket listens (raising `PortInUse` if the address is taken);
    `stop` stops accepting, lets requests in flight finish (at most `graceful_s`), runs the
    application's lifespan shutdown and returns. `setting` names the variable that sets the
    port (for the message when it is in use)."""

    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        setting: str,
        lifespan: bool = False,
        graceful_s: int = 10,
        **uvicorn_options: Any,
    ) -> None:
        self.host, self.port, self.setting = host, port, setting
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on" if lifespan else "off",
            timeout_graceful_shutdown=graceful_s,
            **uvicorn_options,
        )
        self._server = _ServerWithoutSignals(self._config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bound here, not by uvicorn: uvicorn reports a taken port by logging and exiting the
        # process; a bound socket handed to it reports nothing and serves.
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"{self.host}:{self.port} ({self.setting}) is already in use"
                ) from None
            raise
        sock.set_inheritable(True)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it (a lifespan start-up failure)
                raise RuntimeError(f"the HTTP server on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.01)

    async def wait(self) -> None:
        """Until the server stops (by `stop`, or a failure it raises)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def request_stop(self) -> None:
        self._server.should_exit = True

    async def stop(self) -> None:
        self.request_stop()
        if self._task is not None:
            await self._task
