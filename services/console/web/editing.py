"""The editors' pages: scoring rules (owned by score) and routing (owned by router), changed
without a deploy. The console asks the owning service for everything (`config_client`): the
live version, the versions, checks, simulations, publications. What it keeps itself is the
draft an editor works on (`drafts`) and the audit log.

Per kind K (`rules`, `routing`); viewers read, editors change:

GET  /K                          the live version, open drafts, versions and publications
POST /K/drafts                   a new draft from the live version -> its page
GET  /K/drafts/{id}              the draft: form (rules) and YAML, problems, simulation, publish
POST /K/drafts/{id}/form         (rules) the form's changes, checked by the service
POST /K/drafts/{id}/yaml         the YAML pane's text, checked by the service
POST /K/drafts/{id}/simulate     a simulation of the draft on the stored history (background)
POST /K/drafts/{id}/cancel       cancel it
POST /K/drafts/{id}/publish      saved as a version and published (note required); refused
                                 with the reason if someone published since the draft began
POST /K/drafts/{id}/rebase       a new draft from the live version with this draft's content
GET  /K/versions                 the versions; `?from=&to=` the diff between two
POST /K/versions/{v}/publish     publish an earlier version (a rollback), note required
GET  /api/K/simulations/{id}     a simulation's state (the draft page polls it)
POST /routing/reps/{rep}         a rep's availability (active, out of office, weight, daily
                                 cap), published at once as a new routing version

Every change is in the audit log: who, what, the version and the note.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.console import drafts, people, queries
from services.console.config_client import ConfigClient, Refused, Unavailable
from services.console.drafts import Draft, Kind
from services.console.people import Person
from services.console.rules_form import (
    OPERATOR_WORDS,
    OPERATORS,
    THRESHOLDS,
    apply_form,
    describe,
    simple_condition,
)
from services.console.sdr_load import load_rows
from services.console.version_diff import yaml_diff
from services.console.web.access import at_least, signed_in
from services.console.web.rendering import Pages
from shared.config_files import document_yaml
from shared.db import unit_of_work

VIEWER = Depends(signed_in)
EDITOR = Depends(at_least("editor"))
MAX_NOTE = 500
TITLES: dict[Kind, str] = {"rules": "Scoring rules", "routing": "Routing"}


@dataclass(frozen=True)
class Editors:
    """The owning services' APIs: score's rules, router's routing."""

    rules: ConfigClient
    routing: ConfigClient

    def of(self, kind: Kind) -> ConfigClient:
        return self.rules if kind == "rules" else self.routing


@dataclass(frozen=True)
class _Context:
    """What every editing route needs."""

    sessions: async_sessionmaker[AsyncSession]
    pages: Pages
    editors: Editors

    def unavailable(self, request: Request, kind: Kind, exc: Unavailable) -> Response:
        return self.pages.refusal(request, 503, f"{TITLES[kind]}: {exc}")

    async def audit(self, person: Person, action: str, detail: str = "") -> None:
        async with unit_of_work(self.sessions) as session:
            await people.audit(session, username=person.username, action=action, detail=detail)

    @staticmethod
    def flash(request: Request, text: str) -> None:
        request.session["flash"] = text

    async def draft_or_404(self, request: Request, kind: Kind, draft_id: str) -> Draft | Response:
        async with self.sessions() as session:
            found = await drafts.get_draft(session, kind, draft_id)
        if found is None:
            return self.pages.refusal(request, 404, "no such draft")
        return found


def editing_routes(
    *, sessions: async_sessionmaker[AsyncSession], pages: Pages, editors: Editors
) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    context = _Context(sessions=sessions, pages=pages, editors=editors)
    unavailable, audit, flash = context.unavailable, context.audit, context.flash
    for kind in ("rules", "routing"):
        _kind_routes(router, kind, context)

    @router.post("/routing/reps/{rep_id}")
    async def change_rep(
        request: Request,
        rep_id: str,
        expected_live: str = Form(...),
        change: str = Form(...),
        note: str = Form(default=""),
        away_from: str = Form(default=""),
        away_until: str = Form(default=""),
        weight: str = Form(default=""),
        daily_cap: str = Form(default=""),
        person: Person = EDITOR,
    ) -> Response:
        """One of the reps page's quick changes (`change`): `activate`, `deactivate`, `away`
        (a new out-of-office range), `back` (no out of office any more), `capacity`."""
        try:
            roster = await editors.routing.get("/reps")
        except Unavailable as exc:
            return unavailable(request, "routing", exc)
        reps = {rep["id"]: rep for rep in roster}
        rep = reps.get(rep_id)
        if rep is None:
            return pages.refusal(request, 404, f"no rep {rep_id!r} in the live routing")
        body: dict[str, Any] = {"by": person.username, "expected_live": expected_live}
        if change in ("activate", "deactivate"):
            body["active"] = change == "activate"
            what = "active" if change == "activate" else "inactive"
        elif change == "away":
            ranges = [*rep.get("out_of_office", []), {"from": away_from, "until": away_until}]
            body["out_of_office"] = ranges
            what = f"out of office {away_from} to {away_until}"
        elif change == "back":
            body["out_of_office"] = []
            what = "no out of office"
        elif change == "capacity":
            body["weight"] = _number_or_text(weight)
            body["daily_cap"] = _number_or_text(daily_cap) if daily_cap.strip() else None
            what = f"weight {weight}, daily cap {daily_cap.strip() or 'none'}"
        else:
            return pages.refusal(request, 400, f"unknown change {change!r}")
        body["note"] = note.strip()[:MAX_NOTE] or f"{rep.get('name', rep_id)}: {what}"
        try:
            answer = await editors.routing.post(f"/reps/{rep_id}", body)
        except Refused as exc:
            flash(request, f"Not changed: {exc}")
            return RedirectResponse("/routing", status_code=303)
        except Unavailable as exc:
            return unavailable(request, "routing", exc)
        version = answer["version"]["version"]
        await audit(person, f"published routing version {version}",
                    f"{rep.get('name', rep_id)} ({rep_id}): {what}; note: {body['note']}")  # fmt: skip
        flash(request, f"{rep.get('name', rep_id)}: {what}. Routing version {version} is live.")
        return RedirectResponse("/routing", status_code=303)

    return router


def _kind_routes(router: APIRouter, kind: Kind, context: _Context) -> None:
    sessions, pages, editors = context.sessions, context.pages, context.editors
    unavailable, audit, flash = context.unavailable, context.audit, context.flash
    draft_or_404 = context.draft_or_404
    client = editors.of(kind)
    title = TITLES[kind]

    @router.get(f"/{kind}", name=f"{kind}_overview")
    async def overview(request: Request, person: Person = VIEWER) -> Response:
        try:
            summary = await client.overview()
            live = await client.version("live")
            extra = await _overview_extra(kind, editors)
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        async with sessions() as session:
            open_drafts = await drafts.recent_drafts(session, kind)
        return pages.render(
            request, f"{kind}.html", kind=kind, title=title, summary=summary, live=live,
            drafts=open_drafts, describe=describe, today=date.today().isoformat(), **extra,
        )  # fmt: skip

    @router.post(f"/{kind}/drafts", name=f"{kind}_new_draft")
    async def new_draft(request: Request, person: Person = EDITOR) -> Response:
        try:
            live = await client.version("live")
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        async with unit_of_work(sessions) as session:
            draft = await drafts.create_draft(
                session, kind=kind, parent=live["version"], body={"document": live["document"]},
                by=person.username,
            )  # fmt: skip
        return RedirectResponse(f"/{kind}/drafts/{draft.draft_id}", status_code=303)

    @router.get(f"/{kind}/drafts/{{draft_id}}", name=f"{kind}_draft")
    async def draft_page(request: Request, draft_id: str, person: Person = EDITOR) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        return await _draft_page(request, kind, found, client=client, context=context)

    async def checked(draft: Draft, body: dict[str, Any]) -> str | None:
        """Ask the service whether `body` is valid; its reason when not. Stored either way:
        an editor's work is never lost to a typo."""
        problems = None
        try:
            await client.check(body)
        except Refused as exc:
            problems = str(exc)
        async with unit_of_work(sessions) as session:
            await drafts.update_draft(session, draft.draft_id, body=body, problems=problems)
        return problems

    if kind == "rules":

        @router.post("/rules/drafts/{draft_id}/form", name="rules_form")
        async def from_form(request: Request, draft_id: str, person: Person = EDITOR) -> Response:
            found = await draft_or_404(request, kind, draft_id)
            if isinstance(found, Response):
                return found
            document = _document_of(found.body)
            if document is None:
                flash(request, "Fix the YAML first: the form edits a document that reads.")
                return RedirectResponse(f"/rules/drafts/{draft_id}", status_code=303)
            form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
            try:
                problems = await checked(found, {"document": apply_form(document, form)})
            except Unavailable as exc:
                return unavailable(request, kind, exc)
            flash(request, "Draft checked: it can be simulated and published." if problems
                  is None else "The draft has problems: see below.")  # fmt: skip
            return RedirectResponse(f"/rules/drafts/{draft_id}", status_code=303)

    @router.post(f"/{kind}/drafts/{{draft_id}}/yaml", name=f"{kind}_yaml")
    async def from_yaml(
        request: Request, draft_id: str, text: str = Form(...), person: Person = EDITOR
    ) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        try:
            problems = await checked(found, {"yaml": text})
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        flash(request, "Draft checked: it can be simulated and published." if problems is None
              else "The draft has problems: see below.")  # fmt: skip
        return RedirectResponse(f"/{kind}/drafts/{draft_id}", status_code=303)

    @router.post(f"/{kind}/drafts/{{draft_id}}/simulate", name=f"{kind}_simulate")
    async def simulate(request: Request, draft_id: str, person: Person = EDITOR) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        if found.problems:
            flash(request, "The draft has problems: fix them before simulating.")
            return RedirectResponse(f"/{kind}/drafts/{draft_id}", status_code=303)
        try:
            state = await client.simulate(found.body, by=person.username)
        except Refused as exc:
            flash(request, f"Not started: {exc}")
            return RedirectResponse(f"/{kind}/drafts/{draft_id}", status_code=303)
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        async with unit_of_work(sessions) as session:
            await drafts.note_simulation(session, draft_id, state["id"])
        await audit(person, f"simulated a {kind} draft", f"draft {draft_id}")
        return RedirectResponse(f"/{kind}/drafts/{draft_id}#simulation", status_code=303)

    @router.post(f"/{kind}/drafts/{{draft_id}}/cancel", name=f"{kind}_cancel")
    async def cancel(request: Request, draft_id: str, person: Person = EDITOR) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        if found.simulation_id:
            try:
                await client.cancel(found.simulation_id)
            except (Refused, Unavailable) as exc:
                flash(request, f"Not cancelled: {exc}")
        return RedirectResponse(f"/{kind}/drafts/{draft_id}#simulation", status_code=303)

    @router.post(f"/{kind}/drafts/{{draft_id}}/publish", name=f"{kind}_publish")
    async def publish(
        request: Request, draft_id: str, note: str = Form(default=""), person: Person = EDITOR
    ) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        note = note.strip()[:MAX_NOTE]
        if not note:
            flash(request, "Say why in the note: it stays with the version.")
            return RedirectResponse(f"/{kind}/drafts/{draft_id}#publish", status_code=303)
        if found.problems:
            flash(request, "The draft has problems: fix them before publishing.")
            return RedirectResponse(f"/{kind}/drafts/{draft_id}", status_code=303)
        try:
            answer = await client.save(
                found.body, parent=found.parent, note=note, by=person.username, publish=True
            )
        except Refused as exc:
            flash(request, f"Not published: {exc}")
            return RedirectResponse(f"/{kind}/drafts/{draft_id}#publish", status_code=303)
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        version = answer["version"]["version"]
        async with unit_of_work(sessions) as session:
            await drafts.note_published(session, draft_id, version)
            await people.audit(session, username=person.username,
                               action=f"published {kind} version {version}",
                               detail=f"from version {found.parent}; note: {note}")  # fmt: skip
        flash(request, f"{title} version {version} is live: every replica uses it from its "
              "next batch.")  # fmt: skip
        return RedirectResponse(f"/{kind}", status_code=303)

    @router.post(f"/{kind}/drafts/{{draft_id}}/rebase", name=f"{kind}_rebase")
    async def rebase(request: Request, draft_id: str, person: Person = EDITOR) -> Response:
        found = await draft_or_404(request, kind, draft_id)
        if isinstance(found, Response):
            return found
        try:
            live = await client.overview()
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        async with unit_of_work(sessions) as session:
            draft = await drafts.create_draft(
                session, kind=kind, parent=live["live"], body=found.body, by=person.username
            )
        flash(request, f"A new draft on version {live['live']}, with your changes: compare "
              "them with what was published before you publish.")  # fmt: skip
        return RedirectResponse(f"/{kind}/drafts/{draft.draft_id}", status_code=303)

    @router.get(f"/{kind}/versions", name=f"{kind}_versions")
    async def versions(request: Request, to: str = "", person: Person = VIEWER) -> Response:
        from_ = request.query_params.get("from", "")  # `from` is a Python keyword
        try:
            summary = await client.overview()
            diff = None
            if from_ and to:
                before, after = await client.version(from_), await client.version(to)
                diff = yaml_diff(_as_written(before["document"]), _as_written(after["document"]))
        except Refused as exc:
            return pages.refusal(request, exc.status, str(exc))
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        return pages.render(request, "versions.html", kind=kind, title=title, summary=summary,
                            diff=diff, diff_from=from_, diff_to=to)  # fmt: skip

    @router.post(f"/{kind}/versions/{{version}}/publish", name=f"{kind}_rollback")
    async def publish_again(
        request: Request,
        version: str,
        note: str = Form(default=""),
        expected_live: str = Form(...),
        person: Person = EDITOR,
    ) -> Response:
        note = note.strip()[:MAX_NOTE]
        if not note:
            flash(request, "Say why in the note: it stays in the publication history.")
            return RedirectResponse(f"/{kind}/versions", status_code=303)
        try:
            await client.publish(version, note=note, by=person.username,
                                 expected_live=expected_live)  # fmt: skip
        except Refused as exc:
            flash(request, f"Not published: {exc}")
            return RedirectResponse(f"/{kind}/versions", status_code=303)
        except Unavailable as exc:
            return unavailable(request, kind, exc)
        await audit(person, f"published {kind} version {version} again",
                    f"replacing version {expected_live}; note: {note}")  # fmt: skip
        flash(request, f"{title} version {version} is live again.")
        return RedirectResponse(f"/{kind}", status_code=303)

    @router.get(f"/api/{kind}/simulations/{{simulation_id}}", name=f"{kind}_simulation_json")
    async def simulation_json(simulation_id: str, person: Person = VIEWER) -> Response:
        try:
            state = await client.simulation(simulation_id)
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Unavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(state)


async def _overview_extra(kind: Kind, editors: Editors) -> dict[str, Any]:
    """What a kind's overview shows beside its versions: the reps, for routing."""
    if kind == "routing":
        return {"reps": await editors.routing.get("/reps")}
    return {}


async def _draft_page(
    request: Request, kind: Kind, draft: Draft, *, client: ConfigClient, context: _Context
) -> Response:
    try:
        summary = await client.overview()
        simulation = await client.simulation(draft.simulation_id) if draft.simulation_id else None
        facts = (await client.get("/facts"))["facts"] if kind == "rules" else []
    except Refused:
        simulation, facts = None, []
        summary = {"live": None}
    except Unavailable as exc:
        return context.unavailable(request, kind, exc)
    document = _document_of(draft.body)
    text = draft.body["yaml"] if "yaml" in draft.body else document_yaml(document or {})
    load = None
    if kind == "rules" and simulation is not None and simulation["status"] == "done":
        load = await _sdr_load(
            simulation["result"], editors=context.editors, sessions=context.sessions
        )
    return context.pages.render(
        request,
        "draft.html",
        kind=kind,
        title=TITLES[kind],
        draft=draft,
        live=summary.get("live"),
        document=document,
        yaml_text=text,
        simulation=simulation,
        load=load,
        facts=facts,
        values_of={fact["field"]: fact["values"] for fact in facts},
        # a value input offers the values seen for its field: one datalist per such field
        value_lists={
            fact["field"]: f"values-{n}" for n, fact in enumerate(facts) if fact["values"]
        },
        operators=OPERATORS,
        operator_words=OPERATOR_WORDS,
        thresholds=THRESHOLDS,
        simple_condition=simple_condition,
        describe=describe,
    )


async def _sdr_load(
    result: Mapping[str, Any], *, editors: Editors, sessions: async_sessionmaker[AsyncSession]
) -> dict[str, Any] | None:
    """How the SDR load per team and rep would move: the router's preview of the leads that
    would become MQL (handed to someone) and drop (taken from someone), beside each rep's SDR
    leads of the last 30 days. None when the router cannot say."""
    try:
        preview = await editors.routing.post(
            "/preview",
            {"gained": result.get("becoming_ids", []), "lost": result.get("dropping_ids", [])},
        )
    except (Refused, Unavailable):
        return None
    async with sessions() as session:
        recent = await queries.sdr_load(session, days=30)
    return {"rows": load_rows(recent, preview), "preview": preview}


def _document_of(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The draft's document: as sent, or read from its YAML (None when the YAML does not read
    as a mapping: the form then waits for the YAML to be fixed)."""
    if "document" in body:
        document = body["document"]
        return dict(document) if isinstance(document, dict) else None
    try:
        document = yaml.safe_load(body.get("yaml", ""))
    except yaml.YAMLError:
        return None
    return document if isinstance(document, dict) else None


def _number_or_text(text: str) -> Any:
    try:
        return int(text.strip())
    except ValueError:
        return text.strip()  # refused by the router with the field's name


def _as_written(document: Mapping[str, Any]) -> str:
    """A version's document as YAML without its stamped version id (which always differs):
    a diff shows what people changed."""
    return document_yaml({key: value for key, value in document.items() if key != "version"})
