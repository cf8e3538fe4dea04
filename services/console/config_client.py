"""The console's questions about versioned configuration, asked to the service that owns it
(`shared.config_api`): score's rules at `/v1/rules`, router's routing at `/v1/routing`. The
console keeps no copy: versions, publications and simulations live in the owning service.

Every method answers the service's JSON, or raises:
- `Refused`: the service said no with a reason a person can act on (400 a bad draft, naming
  the line or field; 404; 409 someone published meanwhile, or a simulation already runs). The
  reason is shown as the service wrote it.
- `Unavailable`: no answer, an answer the console cannot read, or a token not configured.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

TIMEOUT_S = 10.0


class Refused(Exception):
    """The service refused; `str()` is its reason, `status` its HTTP status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Unavailable(Exception):
    """The service could not answer; `str()` says why (no personal data in it)."""


class ConfigClient:
    """One service's versioned kind (`kind`: "rules" or "routing"), asked with `token` (a client
    holding the kind's read, simulate and publish scopes; None: not configured)."""

    def __init__(self, *, service: str, kind: str, base_url: str, token: str | None) -> None:
        self.service = service
        self.kind = kind
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    async def overview(self) -> dict[str, Any]:
        """The live version id, the versions (newest first) and the publications."""
        return await self._object("GET", "")

    async def version(self, version: str) -> dict[str, Any]:
        """One version (`live`: the live one) with its `document` and `yaml`."""
        return await self._object("GET", f"/versions/{quote(version, safe='')}")

    async def check(self, draft: dict[str, Any]) -> dict[str, Any]:
        """Validate a draft (`{"yaml": ...}` or `{"document": ...}`); `Refused` (400) says why."""
        return await self._object("POST", "/check", json=draft)

    async def save(
        self, draft: dict[str, Any], *, parent: str | None, note: str, by: str, publish: bool
    ) -> dict[str, Any]:
        """Save a draft as a version of `parent`, and with `publish` make it live if `parent` is
        still the live version (else `Refused` 409, nothing saved)."""
        body = {**draft, "parent": parent, "note": note, "by": by, "publish": publish}
        return await self._object("POST", "/versions", json=body)

    async def publish(
        self, version: str, *, note: str, by: str, expected_live: str | None
    ) -> dict[str, Any]:
        """Make `version` live (a rollback when it is an earlier one) if `expected_live` is
        still the live version (else `Refused` 409)."""
        body = {"note": note, "by": by, "expected_live": expected_live}
        return await self._object("POST", f"/versions/{quote(version, safe='')}/publish", json=body)

    async def simulate(self, draft: dict[str, Any], *, by: str) -> dict[str, Any]:
        """Start a draft's simulation in the background; its state (`id`, `status`...)."""
        return await self._object("POST", "/simulations", json={**draft, "by": by})

    async def simulation(self, simulation_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/simulations/{quote(simulation_id, safe='')}")

    async def cancel(self, simulation_id: str) -> dict[str, Any]:
        return await self._object("DELETE", f"/simulations/{quote(simulation_id, safe='')}")

    async def get(self, path: str) -> Any:
        """Another read of the kind's routes (`/facts`, `/reps`): its JSON."""
        return await self._ask("GET", path)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        """Another change through the kind's routes (`/reps/{id}`, `/preview`): its JSON."""
        return await self._ask("POST", path, json=body)

    async def close(self) -> None:
        await self._http.aclose()

    async def _object(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        answer = await self._ask(method, path, json=json)
        if not isinstance(answer, dict):
            raise Unavailable(f"{self.service}'s API answered something the console cannot read")
        return answer

    async def _ask(self, method: str, path: str, *, json: Any = None) -> Any:
        if not self._token:
            raise Unavailable(
                f"{self.service}'s API is not configured "
                f"(LEADFLOW_CONSOLE_{self.service.upper()}_API_TOKEN)"
            )
        try:
            answer = await self._http.request(method, f"/v1/{self.kind}{path}", json=json)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"{self.service}'s API did not answer ({type(exc).__name__})"
            ) from None
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status_code in (400, 404, 409, 413) and isinstance(body, dict):
            raise Refused(answer.status_code, str(body.get("error", "refused")))
        if not answer.is_success or body is None:
            raise Unavailable(f"{self.service}'s API answered {answer.status_code}")
        return body
