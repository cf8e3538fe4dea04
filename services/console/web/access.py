"""Who is asking: every page and API call needs a signed-in person (`signed_in`), some a role
(`at_least`). Without a session, a page redirects to the sign-in page and the JSON API answers
401; without the role, 403. `open_routes` lists the routes that ask neither (the app refuses to
start with one that is not meant to be open).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console.config import Role
from services.console.people import Person, person_of_session
from services.console.web.filters import BadFilter

SESSION_KEY = "session"
"""The key of the session id in the signed session cookie."""


class NotSignedIn(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, role: Role) -> None:
        super().__init__(role)
        self.role = role


async def signed_in(request: Request) -> Person:
    """The person whose session the request carries (a dependency of every non-public route)."""
    session_id = request.session.get(SESSION_KEY)
    if not isinstance(session_id, str):
        raise NotSignedIn
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        person = await person_of_session(session, session_id, at=datetime.now(UTC))
    if person is None:
        request.session.pop(SESSION_KEY, None)
        raise NotSignedIn
    request.state.person = person
    return person


def at_least(role: Role) -> Callable[..., Awaitable[Person]]:
    """A dependency: the signed-in person, who must hold `role` or a higher one."""

    async def holding(person: Person = Depends(signed_in)) -> Person:  # noqa: B008
        if not person.may(role):
            raise Forbidden(role)
        return person

    holding.__name__ = f"at_least_{role}"
    return holding


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def install_refusals(app: FastAPI, *, page: Callable[[Request, int, str], Response]) -> None:
    """How the app answers `NotSignedIn`, `Forbidden` and a bad filter (`BadFilter`, 400 with
    the reason): JSON for the API, pages otherwise."""

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return JSONResponse({"error": "sign in first"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        reason = f"this needs the {exc.role} role"
        if is_api(request):
            return JSONResponse({"error": reason}, status_code=403)
        return page(request, 403, reason)

    async def bad_filter(request: Request, exc: Exception) -> Response:
        if is_api(request):
            return JSONResponse({"error": str(exc)}, status_code=400)
        return page(request, 400, str(exc))

    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(BadFilter, bad_filter)


def open_routes(routers: Sequence[APIRouter], *, public: set[str]) -> list[str]:
    """The routes of `routers` that need no signed-in person and are not in `public` (paths).
    Checked on the routers before the app includes them (an app lists included routers, not
    their routes)."""
    found = []
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute) or route.path in public:
                continue
            if not _depends_on(route.dependant, signed_in):
                found.append(f"{sorted(route.methods or ())} {route.path}")
    return found


def _depends_on(dependant: Any, call: Any) -> bool:
    return any(
        dependency.call is call or _depends_on(dependency, call)
        for dependency in dependant.dependencies
    )
