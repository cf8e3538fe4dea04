"""Authentication of the services' own endpoints (shared/service_api.py), in process."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError

from shared.secret_hashes import secret_hash
from shared.service_api import client_table, requires, serve_clients, unauthenticated_routes
from shared.settings import ApiClient, ApiSettings

pytestmark = pytest.mark.unit

READER, EDITOR = "r" * 43, "e" * 43
SETTINGS = ApiSettings(
    clients={
        "reader": ApiClient(token_sha256=secret_hash(READER), scopes=["leads:read"]),
        "editor": ApiClient(
            token_sha256=secret_hash(EDITOR), scopes=["leads:read", "rules:simulate"]
        ),
    }
)


def app_with(router: APIRouter, settings: ApiSettings = SETTINGS) -> httpx.AsyncClient:
    """A client of an app serving `router` in process (ASGI, no socket)."""
    app = FastAPI()
    serve_clients(app, settings)
    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


def routes() -> APIRouter:
    router = APIRouter()

    @router.get("/lead", dependencies=[requires("leads:read")])
    def lead() -> dict[str, str]:
        return {"email": "maria@northwind.io"}

    @router.post("/simulate", dependencies=[requires("rules:simulate")])
    def simulate() -> dict[str, bool]:
        return {"done": True}

    return router


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({}, "/lead", 401),  # no credentials
        ({"Authorization": "Bearer nope"}, "/lead", 401),  # a guess
        ({"Authorization": f"Basic {READER}"}, "/lead", 401),  # another scheme
        ({"Authorization": f"Bearer {READER}"}, "/lead", 200),
        ({"Authorization": f"Bearer {READER}"}, "/simulate", 403),  # a scope it lacks
        ({"Authorization": f"Bearer {EDITOR}"}, "/simulate", 200),
    ],
)
async def test_each_route_answers_only_a_known_client_with_its_scope(
    headers: dict[str, str], path: str, status: int
) -> None:
    async with app_with(routes()) as client:
        answer = await client.request(
            "POST" if path == "/simulate" else "GET", path, headers=headers
        )

    assert answer.status_code == status
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"
        assert set(answer.json()) == {"error"}


async def test_no_client_configured_means_nobody_gets_in() -> None:
    async with app_with(routes(), ApiSettings()) as client:
        answer = await client.get("/lead", headers={"Authorization": f"Bearer {READER}"})

    assert answer.status_code == 401


def test_only_the_hash_of_a_token_is_configured() -> None:
    table = client_table(SETTINGS.clients)

    assert table.find(READER) == ("reader", SETTINGS.clients["reader"])
    assert table.find(secret_hash(READER)) is None  # the configured hash is not a token


def test_a_route_that_names_no_scope_is_found_so_the_shell_can_refuse_it() -> None:
    router = routes()

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert unauthenticated_routes([router]) == ["['GET'] /forgotten"]
    assert unauthenticated_routes([routes()]) == []


@pytest.mark.parametrize(
    "entry",
    [
        {"token_sha256": "abc", "scopes": ["leads:read"]},  # not a SHA-256
        {"token_sha256": "0" * 64, "scopes": []},  # no scope
        {"token_sha256": "0" * 64, "scopes": ["admin"]},  # no such scope
        {"token": "plain-text", "scopes": ["leads:read"]},  # a token in clear
    ],
)
def test_a_client_entry_that_is_not_a_hash_with_known_scopes_is_refused(
    entry: dict[str, object],
) -> None:
    with pytest.raises(ValidationError):
        ApiSettings.model_validate({"clients": {"x": entry}})
