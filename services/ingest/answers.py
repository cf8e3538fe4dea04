"""How ingest's edges answer a request they do not admit, and whom they count it against."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from services.ingest.admission import Refusal


def client_address(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy names in X-Forwarded-For
    (uvicorn's proxy headers, `IngestSettings.trusted_proxies`)."""
    return request.client.host if request.client else "unknown"


def refusal_response(refusal: Refusal) -> JSONResponse:
    """How both edges answer a request they do not admit: `{"success": false, "error": ...}`."""
    headers: dict[str, str] = {}
    if refusal.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="leadflow"'
    if refusal.retry_after is not None:
        headers["Retry-After"] = str(refusal.retry_after)
    if refusal.status == 408:
        headers["Connection"] = "close"  # what is left of the body is not read
    return JSONResponse(
        {"success": False, "error": refusal.reason}, status_code=refusal.status, headers=headers
    )
