"""The console's pages (HTML) and its JSON API (`/api/...`), for signed-in people. Each page
and its API twin read the same query (`services.console.queries`); the pages add the charts
and a CSV export. Looking up a lead is audited (who, which lead, when). A bad filter raises
`BadFilter`, answered 400 with the reason by the app (`access.install_refusals`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console import people, queries, repository
from services.console.config import ROLES
from services.console.health import HealthWatch
from services.console.people import Person
from services.console.score_client import ScoreClient, ScoreExplanation, ScoreUnavailable
from services.console.timeline import ledger_of, timeline_of
from services.console.web.access import at_least, signed_in
from services.console.web.filters import cohort_of, period_of, value_of
from services.console.web.rendering import Pages
from shared.db import unit_of_work

VIEWER = Depends(signed_in)
ADMIN = Depends(at_least("admin"))


def console_routes(
    *,
    sessions: async_sessionmaker[AsyncSession],
    pages: Pages,
    score: ScoreClient,
    health: HealthWatch,
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def start(person: Person = VIEWER) -> Response:
        return RedirectResponse("/funnel", status_code=303)

    # --- funnel ---------------------------------------------------------------------------

    async def funnel_data(request: Request) -> queries.FunnelPage:
        cohort = cohort_of(request.query_params)
        async with sessions() as session:
            return await queries.funnel_page(session, cohort)

    @router.get("/funnel")
    async def funnel(request: Request, person: Person = VIEWER) -> Response:
        page = await funnel_data(request)
        async with sessions() as session:
            choices = await queries.dimension_values(session)
        return pages.render(
            request, "funnel.html", page=page, choices=choices, chart=funnel_chart(page)
        )

    @router.get("/api/funnel")
    async def funnel_json(request: Request, person: Person = VIEWER) -> Response:
        page = await funnel_data(request)
        return JSONResponse(_jsonable(asdict(page)))

    @router.get("/funnel.csv")
    async def funnel_csv(request: Request, person: Person = VIEWER) -> Response:
        page = await funnel_data(request)
        rows = [
            [
                row.stage.value,
                row.now,
                row.reached,
                _number(row.share),
                _number(row.conversion),
                _number(row.median_s),
                _number(row.p90_s),
            ]
            for row in page.funnel.stages
        ]
        header = ["stage", "now", "reached", "share", "conversion", "median_s", "p90_s"]
        return _csv("funnel.csv", header, rows)

    @router.get("/funnel-flows.csv")
    async def flows_csv(request: Request, person: Person = VIEWER) -> Response:
        page = await funnel_data(request)
        rows = [
            [flow.week.isoformat(), flow.stage.value, flow.entered, flow.exited, flow.balance]
            for flow in page.flows
        ]
        return _csv("funnel-flows.csv", ["week", "stage", "in", "out", "balance"], rows)

    # --- speed-to-lead --------------------------------------------------------------------

    async def speed_data(request: Request) -> queries.SpeedPage:
        since, until = period_of(request.query_params)
        team = value_of(request.query_params, "team")
        async with sessions() as session:
            return await queries.speed_page(session, since=since, until=until, team=team)

    @router.get("/speed")
    async def speed(request: Request, person: Person = VIEWER) -> Response:
        page = await speed_data(request)
        return pages.render(request, "speed.html", page=page, chart=speed_chart(page))

    @router.get("/api/speed")
    async def speed_json(request: Request, person: Person = VIEWER) -> Response:
        page = await speed_data(request)
        return JSONResponse(_jsonable(asdict(page)))

    @router.get("/speed.csv")
    async def speed_csv(request: Request, person: Person = VIEWER) -> Response:
        page = await speed_data(request)
        header = ["team", "rep", "name", "decisions", "decision_p50_ms", "decision_p90_ms",
                  "decision_p99_ms", "accepted", "acceptance_p50_ms", "acceptance_p90_ms",
                  "acceptance_p99_ms", "sla_met", "sla_breached", "reassigned", "escalated"]  # fmt: skip
        rows = [
            [
                line.team,
                line.rep,
                line.name,
                line.decision.leads,
                _number(line.decision.p50),
                _number(line.decision.p90),
                _number(line.decision.p99),
                line.acceptance.leads,
                _number(line.acceptance.p50),
                _number(line.acceptance.p90),
                _number(line.acceptance.p99),
                *(line.sla[outcome] for outcome in ("met", "breached", "reassigned", "escalated")),
            ]
            for line in page.by_rep
        ]
        return _csv("speed-to-lead.csv", header, rows)

    # --- leads ----------------------------------------------------------------------------

    async def found(person: Person, text: str) -> list[Any]:
        async with unit_of_work(sessions) as session:
            leads = await queries.search_leads(session, text[:200])
            if text.strip():
                await people.audit(
                    session,
                    username=person.username,
                    action="searched leads",
                    detail=f"{len(leads)} found",
                )
        return leads

    @router.get("/leads")
    async def leads(request: Request, q: str = "", person: Person = VIEWER) -> Response:
        return pages.render(request, "leads.html", q=q, leads=await found(person, q))

    @router.get("/api/leads")
    async def leads_json(q: str = "", person: Person = VIEWER) -> Response:
        return JSONResponse(_jsonable([asdict(lead) for lead in await found(person, q)]))

    async def story_of(person: Person, key: str) -> dict[str, Any] | None:
        async with unit_of_work(sessions) as session:
            story = await queries.lead_story(session, key)
            if story is None:
                return None
            # The lookup is audited under the lead's lock, the one an erasure takes: an
            # erasure under way is waited for (and then the lead is gone: 404), and one that
            # starts now waits for this entry, which it then anonymises with the lead's rows.
            await repository.lock_leads(session, [story.record.lead_id])
            if not await repository.lead_exists(session, story.record.lead_id):
                return None
            await people.audit(
                session,
                username=person.username,
                action="viewed lead",
                lead_id=story.record.lead_id,
            )
        explanation: ScoreExplanation | None = None
        unavailable: str | None = None
        try:
            explanation = await score.explain(story.record.lead_id)
        except ScoreUnavailable as exc:
            unavailable = str(exc)
        return {
            "story": story,
            "explanation": explanation,
            "score_unavailable": unavailable,
            "ledger": ledger_of(explanation) if explanation is not None else None,
            "timeline": timeline_of(story, explanation),
        }

    @router.get("/leads/{key}")
    async def lead(request: Request, key: str, person: Person = VIEWER) -> Response:
        data = await story_of(person, key)
        if data is None:
            return pages.refusal(request, 404, "no lead with that id or email")
        return pages.render(request, "lead.html", **data)

    @router.get("/api/leads/{key}")
    async def lead_json(key: str, person: Person = VIEWER) -> Response:
        data = await story_of(person, key)
        if data is None:
            return JSONResponse({"error": "no lead with that id or email"}, status_code=404)
        return JSONResponse(_jsonable(data))

    # --- health ---------------------------------------------------------------------------

    @router.get("/health")
    async def health_page(request: Request, person: Person = VIEWER) -> Response:
        return pages.render(request, "health.html", services=health.view())

    @router.get("/api/health")
    async def health_json(person: Person = VIEWER) -> Response:
        return JSONResponse(
            _jsonable(
                [{**asdict(service), "per_second": service.per_second} for service in health.view()]
            )
        )

    # --- administration -------------------------------------------------------------------

    @router.get("/admin/people")
    async def people_page(request: Request, person: Person = ADMIN) -> Response:
        async with sessions() as session:
            everyone = await people.people(session)
        return pages.render(request, "people.html", people=everyone, roles=ROLES)

    @router.post("/admin/people/{username}")
    async def change_person(
        request: Request,
        username: str,
        role: str = Form(default=""),
        disabled: str = Form(default=""),
        person: Person = ADMIN,
    ) -> Response:
        if username == person.username:
            return pages.refusal(request, 400, "you cannot change your own account here")
        async with unit_of_work(sessions) as session:
            if role:
                if role not in ROLES:
                    return pages.refusal(request, 400, f"role: one of {', '.join(ROLES)}")
                await people.set_role(session, username=username, role=role)
            await people.set_disabled(session, username=username, disabled=disabled == "on")
            await people.audit(
                session,
                username=person.username,
                action="changed person",
                detail=f"{username}: role {role or 'unchanged'}, "
                + ("disabled" if disabled == "on" else "enabled"),
            )
        return RedirectResponse("/admin/people", status_code=303)

    @router.get("/admin/audit")
    async def audit_page(request: Request, lead: str = "", person: Person = ADMIN) -> Response:
        async with sessions() as session:
            entries = await people.audit_log(session, lead_id=lead or None)
        return pages.render(request, "audit.html", entries=entries, lead=lead)

    return router


def funnel_chart(page: queries.FunnelPage) -> dict[str, Any]:
    """What the funnel page's charts draw (charts.js): reached per stage; in and out per week."""
    weeks = sorted({flow.week for flow in page.flows})
    stages = [row.stage.value for row in page.funnel.stages]
    flows = {(flow.week, flow.stage.value): flow for flow in page.flows}
    return {
        "stages": stages,
        "reached": [row.reached for row in page.funnel.stages],
        "weeks": [week.isoformat() for week in weeks],
        "entered": {
            stage: [flows[(w, stage)].entered if (w, stage) in flows else 0 for w in weeks]
            for stage in stages
        },
        "exited": {
            stage: [flows[(w, stage)].exited if (w, stage) in flows else 0 for w in weeks]
            for stage in stages
        },
    }


def speed_chart(page: queries.SpeedPage) -> dict[str, Any]:
    """What the speed page's chart draws: p50/p90/p99 per day, to decision and to acceptance
    (milliseconds; null where no lead was decided or accepted that day)."""
    return {
        "days": [day.isoformat() for day, _, _ in page.by_day],
        "decision": {
            name: [getattr(decision, name) for _, decision, _ in page.by_day]
            for name in ("p50", "p90", "p99")
        },
        "acceptance": {
            name: [getattr(accepted, name) for _, _, accepted in page.by_day]
            for name in ("p50", "p90", "p99")
        },
    }


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _csv(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _jsonable(value: Any) -> Any:
    """Dataclasses and models made JSON: dates as ISO text, enums as their values."""
    return jsonable_encoder(value)
