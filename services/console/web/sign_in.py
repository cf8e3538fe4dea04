"""Signing in and out: with a local account (username and password) and, when configured, with
an OpenID Connect provider (`authlib`'s Starlette client: discovery, state and nonce, the
authorization code flow, the ID token's signature and claims checked).

Every form carries the CSRF token (`asgi-csrf`, double-submit cookie); the sign-in form too,
so nobody can sign a visitor in to an account of theirs. A successful sign-in replaces the
session (a new id: no fixation) and is audited; `next` only ever leads to a path of the console.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console import people
from services.console.config import ConsoleSettings
from services.console.people import Person
from services.console.web.access import SESSION_KEY, signed_in
from services.console.web.rendering import Pages
from shared.db import unit_of_work

PUBLIC_PATHS = {"/sign-in", "/sign-in/sso", "/sign-in/sso/callback"}


def local_path(target: str | None) -> str:
    """`target` when it is a path of this console, else the start page (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def sign_in_routes(
    *, settings: ConsoleSettings, sessions: async_sessionmaker[AsyncSession], pages: Pages
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    max_age = timedelta(seconds=settings.session_max_age_s)
    oauth = OAuth()
    if settings.oidc is not None:
        oauth.register(
            "sso",
            server_metadata_url=str(settings.oidc.metadata_url),
            client_id=settings.oidc.client_id,
            client_secret=settings.oidc.client_secret.get_secret_value(),
            client_kwargs={"scope": settings.oidc.scope},
        )

    def form(request: Request, *, error: str | None = None, status: int = 200) -> Response:
        return pages.render(
            request,
            "sign_in.html",
            status=status,
            local=settings.uses_local_accounts,
            sso_label=settings.oidc.label if settings.oidc is not None else None,
            next=local_path(request.query_params.get("next")),
            error=error,
        )

    async def start_session(request: Request, person: Person, how: str) -> None:
        async with unit_of_work(sessions) as session:
            session_id = await people.open_session(
                session, person, at=datetime.now(UTC), max_age=max_age
            )
            await people.audit(session, username=person.username, action=f"signed in ({how})")
        request.session.clear()
        request.session[SESSION_KEY] = session_id

    @router.get("/sign-in")
    async def sign_in_page(request: Request) -> Response:
        return form(request)

    @router.post("/sign-in")
    async def sign_in(
        request: Request,
        username: str = Form(default="", max_length=200),
        password: str = Form(default="", max_length=1000),
        next: str = Form(default="/"),
    ) -> Response:
        if not settings.uses_local_accounts:
            return form(request, error="local accounts are off: use single sign-on", status=403)
        async with sessions() as session:
            person = await people.check_password(session, username=username, password=password)
        if person is None:
            return form(request, error="unknown username or wrong password", status=401)
        await start_session(request, person, "password")
        return RedirectResponse(local_path(next), status_code=303)

    @router.get("/sign-in/sso")
    async def sso(request: Request) -> Response:
        if settings.oidc is None:
            return form(request, error="single sign-on is not configured", status=404)
        callback = (
            str(settings.public_url).rstrip("/") + "/sign-in/sso/callback"
            if settings.public_url is not None
            else str(request.url_for("sso_callback"))
        )
        return await oauth.sso.authorize_redirect(request, callback)  # type: ignore[no-any-return]

    @router.get("/sign-in/sso/callback", name="sso_callback")
    async def sso_callback(request: Request) -> Response:
        oidc = settings.oidc
        if oidc is None:
            return form(request, error="single sign-on is not configured", status=404)
        try:
            token: dict[str, Any] = await oauth.sso.authorize_access_token(request)
        except OAuthError as exc:
            return form(request, error=f"single sign-on failed: {exc.error}", status=401)
        claims = token.get("userinfo") or {}
        role = people.role_from_claims(
            claims, claim=oidc.role_claim, roles=oidc.roles, default=oidc.default_role
        )
        if role is None or not claims.get("sub"):
            return form(request, error="your account has no role in leadflow", status=403)
        async with unit_of_work(sessions) as session:
            person = await people.person_from_sso(
                session,
                subject=str(claims["sub"]),
                email=claims.get("email"),
                name=claims.get("name"),
                role=role,
            )
        if person is None:
            return form(request, error="your account is disabled", status=403)
        await start_session(request, person, "single sign-on")
        return RedirectResponse("/", status_code=303)

    @router.post("/sign-out")
    async def sign_out(request: Request, person: Person = Depends(signed_in)) -> Response:  # noqa: B008
        session_id = request.session.get(SESSION_KEY)
        async with unit_of_work(sessions) as session:
            if isinstance(session_id, str):
                await people.close_session(session, session_id)
            await people.audit(session, username=person.username, action="signed out")
        request.session.clear()
        return RedirectResponse("/sign-in", status_code=303)

    return router
