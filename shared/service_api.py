"""The authenticated API of a consuming service: its own `/v1` routes, on a port of their own.

A service's health port serves only `/healthz`, `/readyz` and `/metrics`, open to probes and
Prometheus. Its own routes (a lead's explanation or routing history: personal data; a
simulation: work that loads the service) are served on `api_host:api_port`, and every request
needs `Authorization: Bearer <token>` of a known client that holds the route's scope.

- **Clients** are one setting for the whole deployment, `LEADFLOW_API_CLIENTS` (a Secret in a
  cluster): JSON `{"<client>": {"token_sha256": "<hex>", "scopes": ["leads:read", ...]}}`. Only
  each token's SHA-256 is configured (`shared.secret_hashes`), so the configuration holds no
  credential; `python -m shared.service_api token <client> --scope ...` makes a token and prints
  the entry. No clients configured: every request is refused; there is no default outside the
  local stack.
- **Scopes** (`SCOPES`): what a client may ask. Each route names its scope with `requires`; the
  shell refuses to serve a route that names none (`unauthenticated_routes`), so no `/v1` route
  can be added open by mistake.
- **Answers**: no or unknown token 401 (with `WWW-Authenticate: Bearer`), the same whichever it
  was; a known client without the scope 403 naming the scope. Tokens are compared in constant
  time and never logged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.secret_hashes import HashedSecrets, new_secret, secret_hash
from shared.settings import SCOPES, ApiClient, ApiSettings, Scope

ERROR: dict[str, Any] = {"content": {"application/json": {"example": {"error": "the reason"}}}}
"""A route's documented error answer (`responses={404: ERROR}`): `{"error": "<reason>"}`."""
DENIED: dict[int | str, dict[str, Any]] = {401: ERROR, 403: ERROR}
"""The refusals every authenticated route may answer (`responses={..., **DENIED}`)."""


def error_response(status: int, reason: str) -> Response:
    """The answer of every leadflow API to a request it refuses: `{"error": "<reason>"}`."""
    return JSONResponse({"error": reason}, status_code=status)


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, read as it streams in; None as soon as it passes `limit` bytes (the
    rest is never read: answer 413)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def client_table(clients: Mapping[str, ApiClient]) -> HashedSecrets[ApiClient]:
    """The configured clients, found by a presented token."""
    return HashedSecrets(clients, hash_of="token_sha256")


_bearer = HTTPBearer(auto_error=False, description="a token of a client in LEADFLOW_API_CLIENTS")
_UNAUTHORISED = HTTPException(
    status_code=401,
    detail="a bearer token of a known client is required (Authorization: Bearer <token>)",
    headers={"WWW-Authenticate": "Bearer"},
)


async def _client(
    security: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    table: HashedSecrets[ApiClient] = request.app.state.api_clients
    if credentials is None or (found := table.find(credentials.credentials)) is None:
        raise _UNAUTHORISED
    name, client = found
    missing = [scope for scope in security.scopes if scope not in client.scopes]
    if missing:
        raise HTTPException(
            status_code=403, detail=f"client {name!r} lacks the scope {', '.join(missing)}"
        )
    return name


def requires(scope: Scope) -> Any:
    """A route's dependency: the caller is a known client holding `scope` (see the module doc).
    Use it in the route's `dependencies=[...]`, or as a parameter to get the client's name."""
    return Security(_client, scopes=[scope])


def unauthenticated_routes(routers: Sequence[APIRouter]) -> list[str]:
    """The routes of `routers` that name no scope with `requires` (the shell refuses them)."""
    open_routes = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and not any(
                dependency.call is _client for dependency in route.dependant.dependencies
            ):
                open_routes.append(f"{sorted(route.methods or ())} {route.path}")
    return open_routes


def serve_clients(app: FastAPI, settings: ApiSettings) -> None:
    """Make `app` authenticate against the configured clients, and answer refusals the way
    every leadflow API answers an error: `{"error": "<reason>"}`."""
    app.state.api_clients = client_table(settings.clients)

    async def as_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(StarletteHTTPException, as_error)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.service_api",
        description="Make a token for a client of the services' APIs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "token", help="print a new token and its LEADFLOW_API_CLIENTS entry"
    )
    token.add_argument("client", help="the client's name, e.g. console")
    token.add_argument(
        "--scope", action="append", choices=sorted(SCOPES), required=True, dest="scopes"
    )
    args = parser.parse_args(argv)
    secret = new_secret()
    entry = {args.client: {"token_sha256": secret_hash(secret), "scopes": args.scopes}}
    print(f"token (give it to the client; it is not stored anywhere): {secret}")
    print(f"LEADFLOW_API_CLIENTS entry: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
