"""score's answer about a lead, asked through its authenticated API (`GET
/v1/leads/{lead}/explain`, scope `leads:read`). The console never reads score's tables.

`ScoreExplanation` is the console's reading of that answer: the fields it shows, with unknown
ones ignored, so score may add to its answer without breaking the console.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

TIMEOUT_S = 5.0


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ScoreNow(_Read):
    fit: int
    behaviour: int
    total: int
    grade: str
    priority: str | None = None


class LedgerLine(_Read):
    rule_id: str
    kind: str
    reason: str
    points: int
    value_now: float
    event_time: datetime
    message_id: str
    note: str = ""


class IdentityLine(_Read):
    at: datetime
    what: str
    detail: str
    other_lead_id: str | None = None


class EventLine(_Read):
    at: datetime
    message_id: str
    what: str


class Factor(_Read):
    description: str
    effect: float


class LikelihoodNow(_Read):
    probability: float
    model_version: str
    horizon_days: float
    up: list[Factor] = []
    down: list[Factor] = []


class ScoreExplanation(_Read):
    lead_id: str
    stage: str
    as_of: datetime
    rule_version: str
    score: ScoreNow
    lines: list[LedgerLine]
    identity: list[IdentityLine] = []
    events: list[EventLine] = []
    likelihood: LikelihoodNow | None = None


class ScoreUnavailable(Exception):
    """score could not answer; `str()` says why, for the page (no personal data in it)."""


class ScoreClient:
    """Asks score's API. `token`: of a client holding `leads:read`; None: not configured (every
    question then raises `ScoreUnavailable` saying so)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self._token = token
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=TIMEOUT_S,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )

    async def explain(self, lead_id: str) -> ScoreExplanation | None:
        """score's explanation of the lead (None: score does not know it)."""
        if not self._token:
            raise ScoreUnavailable(
                "score's API is not configured (LEADFLOW_CONSOLE_SCORE_API_TOKEN)"
            )
        try:
            answer = await self._http.get(f"/v1/leads/{quote(lead_id, safe='')}/explain")
        except httpx.HTTPError as exc:
            raise ScoreUnavailable(f"score's API did not answer ({type(exc).__name__})") from None
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise ScoreUnavailable(f"score's API answered {answer.status_code}")
        try:
            return ScoreExplanation.model_validate_json(answer.content)
        except ValidationError:
            raise ScoreUnavailable(
                "score's API answered something the console cannot read"
            ) from None

    async def close(self) -> None:
        await self._http.aclose()
