"""The console in a real browser (Debian's Chromium) against the running stack with real
traffic: sign in, the funnel shows the stage counts the topics imply (computed here from
`leads.lifecycle` itself), a lead found by email tells a story whose points add up to the score
score's `explain` gives, a viewer cannot reach an admin page, and a request without a session
is refused. A screenshot of each page is kept (`tests/fixtures/browser.py`, ARTIFACTS)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections import Counter
from pathlib import Path

import httpx
from playwright.async_api import Browser, Page

from devstack.processes import ServiceProcess
from shared.topics import LEADS_LIFECYCLE, ROUTING_NURTURE, ROUTING_SDR
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually

HOT = 4  # VPs who ask for a demo: MQL, an SDR decision
COLD = 4  # students who read a post: nurture


def add_person(pipeline: Pipeline, username: str, role: str) -> str:
    """A local account made the way an operator makes one; its password."""
    printed = ServiceProcess("console", pipeline.addresses, log_file=None).run_to_end(
        "add-person", username, "--role", role, "--json"
    )
    password: str = json.loads(printed)["password"]
    return password


async def sign_in(page: Page, base: str, username: str, password: str, *, target: str) -> None:
    await page.goto(base + target)
    assert "/sign-in" in page.url, "a page without a session leads to the sign-in page"
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", password)
    await page.click("form[action='/sign-in'] button[type=submit]")
    await page.wait_for_url(base + target)


async def send_traffic(pipeline: Pipeline, run: str) -> list[str]:
    emails = []
    for number in range(HOT + COLD):
        hot = number < HOT
        email = f"{'vp' if hot else 'student'}.{number}.{run}@acme-robotics.com"
        user = f"u-{run}-{number}"
        traits = {"email": email, "firstName": f"Person{number}", "lastName": run,
                  "title": "VP of Sales" if hot else "Student", "company": "Acme Robotics"}  # fmt: skip
        assert (await pipeline.post("/v1/identify", {"userId": user, "traits": traits})).is_success
        event = "Demo Requested" if hot else "Blog Post Read"
        assert (await pipeline.post("/v1/track", {"userId": user, "event": event})).is_success
        emails.append(email)
    return emails


async def stages_implied_by_the_topic(pipeline: Pipeline) -> Counter[str]:
    """Each lead's stage after its last change on `leads.lifecycle` (one partition per lead:
    offset order is the order of its changes), counted by stage."""
    records = await pipeline.read_all(LEADS_LIFECYCLE.full_name(pipeline.prefix))
    latest: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        change = record.json()
        latest[change["lead_id"]] = change["to_stage"]
    return Counter(latest.values())


async def stage_counts_shown(page: Page) -> dict[str, int]:
    await page.reload()
    cells = page.locator("[data-test=stage-now] strong")
    return {
        str(await cell.get_attribute("data-stage")): int(await cell.inner_text())
        for cell in await cells.all()
    }


async def test_the_console_shows_what_the_topics_imply(
    pipeline: Pipeline, browser: Browser, artifacts: Path
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router", "console")
    base = f"http://127.0.0.1:{pipeline.addresses.console_port}"
    admin_password = add_person(pipeline, "ada", "admin")
    viewer_password = add_person(pipeline, "vic", "viewer")
    emails = await send_traffic(pipeline, uuid.uuid4().hex[:6])

    # Every lead routed, then the stage counts the topic implies, from the topic alone.
    await pipeline.read(ROUTING_SDR.full_name(pipeline.prefix), until=lambda r: len(r) >= HOT)
    await pipeline.read(ROUTING_NURTURE.full_name(pipeline.prefix), until=lambda r: len(r) >= COLD)
    expected = await stages_implied_by_the_topic(pipeline)
    assert sum(expected.values()) == HOT + COLD
    assert expected["mql"] == HOT

    admin = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
    await sign_in(admin, base, "ada", admin_password, target="/funnel")
    shown = await eventually(
        lambda: stage_counts_shown(admin),
        "the funnel shows the stage counts the topic implies",
        until=lambda counts: {s: n for s, n in counts.items() if n} == dict(expected),
    )
    assert shown["mql"] == HOT
    await admin.wait_for_selector("body[data-charts-drawn=yes]")
    await admin.screenshot(path=artifacts / "funnel.png", full_page=True)
    session = {c["name"]: c["value"] for c in await admin.context.cookies()}
    async with httpx.AsyncClient(base_url=base, cookies=session) as signed_in:
        exported = await signed_in.get("/funnel.csv")
        bad_api = await signed_in.get("/api/funnel?since=yesterday")
        bad_page = await signed_in.get("/funnel?since=2026-12-03&until=2026-01-01")
    assert bad_api.status_code == 400
    assert bad_api.json() == {"error": "since: a date is YYYY-MM-DD, not 'yesterday'"}
    assert bad_page.status_code == 400
    assert "the period starts after it ends" in bad_page.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {row["stage"]: int(row["now"]) for row in rows if int(row["now"])} == dict(expected)

    # A lead found by email: its story's points add up to the score that explain gives.
    email = emails[0]
    await admin.goto(f"{base}/leads?q={email}")
    await admin.click(f"text={email}")
    await admin.wait_for_selector("[data-test=timeline]")
    explained = await pipeline.explain(email)
    points = [
        float(str(await value.get_attribute("data-points")))
        for value in await admin.locator("[data-test=timeline] .value").all()
    ]
    assert points, "the timeline shows the rules that scored the lead"
    assert round(sum(points)) == explained["score"]["total"]
    assert await admin.inner_text("[data-test=total]") == str(explained["score"]["total"])
    assert await admin.inner_text("[data-test=email]") == email
    await admin.screenshot(path=artifacts / "lead.png", full_page=True)
    for name in ("speed", "health", "admin/people", "admin/audit"):
        await admin.goto(f"{base}/{name}")
        await admin.screenshot(path=artifacts / f"{name.replace('/', '-')}.png", full_page=True)
    audit = await admin.inner_text("[data-test=audit]")
    assert "viewed lead" in audit, "the lookup is audited"
    assert explained["lead_id"] in audit

    # A viewer sees the funnel but not an admin page.
    viewer = await (await browser.new_context()).new_page()
    await sign_in(viewer, base, "vic", viewer_password, target="/funnel")
    refused = await viewer.goto(f"{base}/admin/people")
    assert refused is not None
    assert refused.status == 403
    assert "People" not in await viewer.inner_text("nav")

    # Without a session: the API refuses, a page sends to the sign-in page; a form posted
    # without the CSRF token is refused even with a session.
    async with httpx.AsyncClient(base_url=base) as anonymous:
        assert (await anonymous.get("/api/funnel")).status_code == 401
        page = await anonymous.get("/funnel")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/sign-in")
        assert (await anonymous.get(f"/api/leads?q={email}")).status_code == 401
    cookies = {c["name"]: c["value"] for c in await viewer.context.cookies()}
    async with httpx.AsyncClient(base_url=base, cookies=cookies) as forger:
        forged = await forger.post("/sign-out", data={"next": "/"})
        assert forged.status_code == 403

    # The console showed these people's data to signed-in users; its log holds none of it.
    log_file = pipeline.processes["console"].log_file
    assert log_file is not None
    logged = log_file.read_text()
    assert "started" in logged
    assert not [email for email in emails if email in logged]
    assert "Person0" not in logged
