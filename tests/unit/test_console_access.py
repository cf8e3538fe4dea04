"""The console's routes all need a signed-in person, but the sign-in pages: checked on the app
as built (no route is reachable without `signed_in`), and a route added without it stops the
app from being built."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.console.config import ConsoleSettings
from services.console.config_client import ConfigClient
from services.console.health import HealthWatch
from services.console.score_client import ScoreClient
from services.console.web import pages
from services.console.web.access import open_routes
from services.console.web.app import console_app
from services.console.web.editing import Editors, editing_routes
from services.console.web.rendering import Pages
from services.console.web.sign_in import PUBLIC_PATHS


def build() -> object:
    settings = ConsoleSettings(
        secret_key=SecretStr("k"), database={"url": "postgresql+asyncpg://x@127.0.0.1:1/x"}
    )
    return console_app(
        settings=settings,
        sessions=async_sessionmaker(),
        score=ScoreClient("http://127.0.0.1:1", None),
        health=HealthWatch({}),
        editors=editors(),
    )


def editors() -> Editors:
    return Editors(
        rules=ConfigClient(service="score", kind="rules", base_url="http://127.0.0.1:1",
                           token=None),
        routing=ConfigClient(service="router", kind="routing", base_url="http://127.0.0.1:1",
                             token=None),
    )  # fmt: skip


def test_every_route_but_signing_in_needs_a_signed_in_person() -> None:
    build()  # refuses to build with an open route (below)
    routers = [pages.console_routes(sessions=async_sessionmaker(), pages=Pages(),
                                    score=ScoreClient("http://127.0.0.1:1", None),
                                    health=HealthWatch({}))]  # fmt: skip
    paths = {route.path for route in routers[0].routes}  # type: ignore[attr-defined]
    assert {"/funnel", "/api/funnel", "/leads/{key}", "/admin/people"} <= paths
    assert open_routes(routers, public=set()) == []
    editing = editing_routes(sessions=async_sessionmaker(), pages=Pages(), editors=editors())
    edit_paths = {route.path for route in editing.routes}  # type: ignore[attr-defined]
    assert {"/rules", "/rules/drafts/{draft_id}/publish", "/routing/reps/{rep_id}",
            "/routing/versions/{version}/publish"} <= edit_paths  # fmt: skip
    assert open_routes([editing], public=set()) == []
    assert {"/sign-in", "/sign-in/sso", "/sign-in/sso/callback"} == PUBLIC_PATHS


def test_a_route_added_without_sign_in_stops_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    built = pages.console_routes

    def with_an_open_route(**kwargs: object) -> APIRouter:
        router = built(**kwargs)  # type: ignore[arg-type]

        @router.get("/api/everything")
        async def everything() -> dict[str, str]:
            return {}

        return router

    monkeypatch.setattr("services.console.web.app.console_routes", with_an_open_route)
    with pytest.raises(TypeError, match="/api/everything"):
        build()
