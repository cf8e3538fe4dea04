"""score's HTTP endpoints, served on its API port (`LEADFLOW_SCORE_API_PORT`, 8092) to clients
with a bearer token (`shared.service_api`; the scope each needs in brackets):

GET  /v1/leads/{lead_id or email}/explain   [leads:read] the score rule by rule, the stage
                                            history and the identity history
GET  /v1/rules/facts      [rules:read]      the facts seen in the stored history, with their
                                            common values (what a condition can test; the IP
                                            address and user agent are stored, and so seen,
                                            only while a live rule reads them: never a value)
GET  /v1/rules/rescore    [rules:simulate]  progress of the rescore under the live rules
/v1/rules...              the scoring rules' versions: list, read, check, save, publish, roll
                          back, simulate in the background (`shared.config_api`)

A simulation (`POST /v1/rules/simulations`, a draft as YAML or as a document) compares the
draft with the live rules on every stored lead: how many scores and stages move, who would
become MQL, who would drop (the first 50 of each, and up to 10,000 lead ids of each for the
SDR load the router's preview counts). Nothing is written. One runs at a time per service;
it stops with `failed` past `LEADFLOW_SCORE_SIMULATE_BUDGET_S`.

A published version is live in every replica at its next batch (no restart); the rescore sweep
then rescores the stored leads in the background (progress above).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.score import repository
from services.score.engine.explain import Explanation
from services.score.engine.ruleset import RuleSet, RulesFileError
from services.score.facts_seen import facts_seen
from services.score.lookups import explain_lead, simulate_stored
from services.score.rules_versions import RULES, live_rules
from services.score.sweep import RescoreProgress
from shared.config_api import ConfigRoutes, config_api
from shared.service_api import DENIED, ERROR, error_response, requires
from shared.simulations import Progress, Simulations

FACTS_SAMPLE = 20_000
"""Stored messages sampled for the facts a rules editor offers (tens of milliseconds)."""


def score_api(
    *,
    sessions: async_sessionmaker[AsyncSession],
    rescore: RescoreProgress,
    simulations: Simulations,
    simulate_budget_s: float,
) -> list[APIRouter]:
    """score's routes. `simulate_budget_s`: a simulation that runs longer ends `failed`."""
    router = APIRouter(prefix="/v1", tags=["score"])

    @router.get(
        "/leads/{key}/explain",
        response_model=Explanation,
        responses={404: ERROR, **DENIED},
        dependencies=[requires("leads:read")],
        summary="Why a lead (id or email) has its score: rule by rule, and its stages",
    )
    async def explain(key: str) -> Response:
        async with sessions() as session:
            rules = await live_rules(session)
            explanation = await explain_lead(session, key, rules, datetime.now(UTC))
        if explanation is None:
            return error_response(404, f"no lead with id or email {key!r}")
        return Response(explanation.model_dump_json(), media_type="application/json")

    @router.get(
        "/rules/facts",
        summary="The facts seen in the stored history and their common values",
        responses=DENIED,
        dependencies=[requires("rules:read")],
    )
    async def facts() -> dict[str, Any]:
        async with sessions() as session:
            sample = await repository.sample_history_facts(session, rows=FACTS_SAMPLE)
        return {"sampled": len(sample), "facts": [asdict(fact) for fact in facts_seen(sample)]}

    @router.get(
        "/rules/rescore",
        summary="Progress of the rescore under the live rules",
        responses=DENIED,
        dependencies=[requires("rules:simulate")],
    )
    async def rescore_progress() -> dict[str, Any]:
        return rescore.view()

    async def simulate(candidate: RuleSet, progress: Progress) -> dict[str, Any]:
        async with sessions() as session:
            live = await live_rules(session)
        summary = await simulate_stored(
            sessions,
            live=live,
            candidate=candidate,
            at=datetime.now(UTC),
            deadline_s=simulate_budget_s,
            progress=progress,
        )
        return summary.model_dump(mode="json")

    rules = config_api(
        ConfigRoutes(
            name="rules",
            config=RULES,
            model=RuleSet,
            error=RulesFileError,
            scopes=("rules:read", "rules:publish", "rules:simulate"),
            simulate=simulate,
        ),
        sessions=sessions,
        simulations=simulations,
    )
    return [router, rules]
