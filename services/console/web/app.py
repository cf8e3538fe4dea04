"""The console's web application: pages, their JSON API and the static files, behind
sign-in.

Layers, outermost first: a bound on request bodies (a form is small; nothing reads an
unbounded body), CSRF protection (`asgi-csrf`: every POST carries the token of its signed
cookie), the session (Starlette's `SessionMiddleware`: a signed cookie holding the session id
and, during a single sign-on, authlib's state), then the routes. Security headers on every
answer: no framing, no sniffing, a content security policy allowing only the console's own
scripts and styles.
"""

from __future__ import annotations

from typing import Any

from asgi_csrf import asgi_csrf
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.console.config import ConsoleSettings
from services.console.health import HealthWatch
from services.console.score_client import ScoreClient
from services.console.web.access import install_refusals, open_routes
from services.console.web.editing import Editors, editing_routes
from services.console.web.pages import console_routes
from services.console.web.rendering import STATIC, Pages
from services.console.web.sign_in import PUBLIC_PATHS, sign_in_routes

MAX_BODY_BYTES = 64 * 1024
SESSION_COOKIE = "leadflow_console"
CSRF_COOKIE = "leadflow_csrf"
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
     b"base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip


def console_app(
    *,
    settings: ConsoleSettings,
    sessions: async_sessionmaker[AsyncSession],
    score: ScoreClient,
    health: HealthWatch,
    editors: Editors,
) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sessions = sessions
    pages = Pages()
    install_refusals(app, page=pages.refusal)
    routers = [
        sign_in_routes(settings=settings, sessions=sessions, pages=pages),
        console_routes(sessions=sessions, pages=pages, score=score, health=health),
        editing_routes(sessions=sessions, pages=pages, editors=editors),
    ]
    if unexpected := open_routes(routers, public=PUBLIC_PATHS):
        raise TypeError(f"console routes open without sign-in: {', '.join(unexpected)}")
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    secret = settings.secret_key.get_secret_value()
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(
        asgi_csrf,
        signing_secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_secure=settings.secure_cookies,
        always_protect=PUBLIC_PATHS,
    )
    app.add_middleware(_Bounded)
    return app


class _Bounded:
    """Refuses (413) a request body past `MAX_BODY_BYTES`, by its Content-Length or as it
    streams in, before anything reads it; adds the security headers to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await _too_large(send)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:
                raise _TooLarge
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, bounded_receive, with_headers)
        except _TooLarge:
            await _too_large(send)


class _TooLarge(Exception):
    pass


async def _too_large(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": b"a request body is at most 64 KiB"})
