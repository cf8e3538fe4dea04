"""Changing scoring and routing from the console, in a real browser (Debian's Chromium) against
the running stack, with no restart of any service:

- an editor changes the demo rule's points, checks and simulates the draft (the numbers the
  page shows are the simulate API's), publishes it with a note, and the next event is scored
  under the new version with the new points; a rollback brings the old points back;
- a viewer sees the rules and their versions but cannot make a draft or publish;
- an editor marks a rep out of office in two clicks, and the next MQLs of that territory go
  to the other rep.

Screenshots of the editor and the simulation result are kept (`tests/fixtures/browser.py`)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.async_api import Browser, Page

from services.router.routing_config import DEFAULT_ROUTING_FILE
from shared.topics import LEADS_SCORED, ROUTING_SDR
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.polling import eventually
from tests.integration.test_console_browser import add_person, sign_in


async def identify_and_track(pipeline: Pipeline, user: str, email: str, event: str) -> None:
    traits = {"email": email, "firstName": "Pat", "lastName": user, "title": "VP of Sales",
              "company": "Acme Robotics"}  # fmt: skip
    assert (await pipeline.post("/v1/identify", {"userId": user, "traits": traits})).is_success
    assert (await pipeline.post("/v1/track", {"userId": user, "event": event})).is_success


async def demo_scored(pipeline: Pipeline, email: str) -> dict[str, Any]:
    """The `leads.scored` message of the lead's demo request."""

    def demo_of(records: list[Any]) -> list[dict[str, Any]]:
        return [
            r.json() for r in records
            if any(c["rule_id"] == "demo-request" for c in r.json()["contributions"])
            and r.json()["lead_id"] == lead_ids.get(email)
        ]  # fmt: skip

    lead_ids: dict[str, str] = {}
    lead_ids[email] = (await explained(pipeline, email))["lead_id"]
    records = await pipeline.read(
        LEADS_SCORED.full_name(pipeline.prefix), until=lambda rs: bool(demo_of(rs))
    )
    return demo_of(records)[-1]


def demo_points(scored: dict[str, Any]) -> int:
    return int(next(c["points"] for c in scored["contributions"] if c["rule_id"] == "demo-request"))


async def explained(pipeline: Pipeline, email: str) -> dict[str, Any]:
    """score's explanation of the lead, once score has it (404 until then)."""

    async def ask() -> Any:
        async with httpx.AsyncClient(headers=pipeline.addresses.api_headers) as client:
            answer = await client.get(
                pipeline.addresses.api_url("score", f"/v1/leads/{email}/explain")
            )
        return answer.json() if answer.status_code == 200 else None

    found: dict[str, Any] = await eventually(ask, f"score knows {email}")
    return found


async def api(pipeline: Pipeline, service: str, path: str) -> Any:
    async with httpx.AsyncClient(headers=pipeline.addresses.api_headers, timeout=30) as client:
        answer = await client.get(pipeline.addresses.api_url(service, path))
    assert answer.status_code == 200, answer.text
    return answer.json()


async def shown(page: Page, test_id: str) -> int:
    return int(await page.inner_text(f"[data-test={test_id}]"))


async def test_an_editor_changes_simulates_publishes_and_rolls_back_the_rules(
    pipeline: Pipeline, browser: Browser, artifacts: Path
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router", "console")
    base = f"http://127.0.0.1:{pipeline.addresses.console_port}"
    editor_password = add_person(pipeline, "eve", "editor")
    viewer_password = add_person(pipeline, "vic", "viewer")
    run = uuid.uuid4().hex[:6]
    for n in range(3):
        await identify_and_track(pipeline, f"u-{run}-{n}", f"vp.{n}.{run}@acme-robotics.com",
                                 "Demo Requested")  # fmt: skip
    before = await demo_scored(pipeline, f"vp.0.{run}@acme-robotics.com")
    assert (before["rule_version"], demo_points(before)) == ("1", 60)

    editor = await (await browser.new_context(viewport={"width": 1500, "height": 1100})).new_page()
    await sign_in(editor, base, "eve", editor_password, target="/rules")
    assert "version 1" in await editor.inner_text("[data-test=live-version]")
    await editor.click("[data-test=new-draft]")
    await editor.wait_for_selector("[data-test=rules-form]")
    # the demo rule's points, in the form; the YAML pane says the same draft
    demo_input = editor.locator(
        "tr[data-rule=demo-request] input[aria-label='demo-request points']"
    )
    await demo_input.fill("20")
    await editor.click("[data-test=check-form]")
    await editor.wait_for_selector("[data-test=flash]")
    assert "can be simulated" in await editor.inner_text("[data-test=flash]")
    assert "points: 20" in await editor.input_value("[data-test=yaml]")
    await editor.screenshot(path=artifacts / "rules-editor.png", full_page=True)
    await editor.set_viewport_size({"width": 1500, "height": 900})
    await editor.screenshot(path=artifacts / "console-rules-editor.png")  # the README's

    # simulate: the page polls the background simulation, then shows its result
    await editor.click("[data-test=simulate]")
    await editor.wait_for_selector("[data-test=simulation-result]", timeout=60_000)
    simulation_id = await editor.get_attribute("[data-test=simulation]", "data-simulation")
    state = await api(pipeline, "score", f"/v1/rules/simulations/{simulation_id}")
    result = state["result"]
    assert state["status"] == "done"
    assert await shown(editor, "leads") == result["leads"] >= 3
    assert await shown(editor, "scores-changed") == result["scores_changed"] >= 3
    assert await shown(editor, "becoming") == result["would_become_mql"]
    assert await shown(editor, "dropping") == result["would_drop_below_mql"]
    assert await shown(editor, "mqls-live") == result["mqls_now"] >= 3
    assert await shown(editor, "mqls-draft") == result["mqls_with_candidate"]
    assert result["would_drop_below_mql"] >= 1  # a VP's demo alone no longer makes an MQL
    await editor.wait_for_selector("[data-test=sdr-load]")
    await editor.screenshot(path=artifacts / "rules-simulation.png", full_page=True)
    simulation = editor.locator("#simulation")
    await simulation.screenshot(path=artifacts / "console-rules-simulation.png")  # the README's

    # publish with a note: live at once, no restart
    await editor.fill("[data-test=note]", "demo requests were over-weighted")
    await editor.click("[data-test=publish]")
    await editor.wait_for_url(base + "/rules")
    assert "version 2 is live" in await editor.inner_text("[data-test=flash]")
    assert await editor.inner_text("tr[data-rule=demo-request] .points") == "20"
    await identify_and_track(pipeline, f"u-{run}-after", f"after.{run}@acme-robotics.com",
                             "Demo Requested")  # fmt: skip
    after = await demo_scored(pipeline, f"after.{run}@acme-robotics.com")
    assert (after["rule_version"], demo_points(after)) == ("2", 20)

    # the versions page: a diff, and a rollback
    await editor.goto(f"{base}/rules/versions?from=1&to=2")
    removed = [
        " ".join(t.split()) for t in await editor.locator(".diff .removed").all_inner_texts()
    ]
    added = [" ".join(t.split()) for t in await editor.locator(".diff .added").all_inner_texts()]
    assert (removed, added) == (["- points: 60"], ["+ points: 20"])
    await editor.screenshot(path=artifacts / "rules-versions.png", full_page=True)
    row = editor.locator("tr[data-version='1']")
    await row.locator("input[name=note]").fill("back to the file's points")
    await row.locator("[data-test=publish-again]").click()
    await editor.wait_for_url(base + "/rules")
    assert "version 1 is live again" in await editor.inner_text("[data-test=flash]")
    await identify_and_track(pipeline, f"u-{run}-back", f"back.{run}@acme-robotics.com",
                             "Demo Requested")  # fmt: skip
    back = await demo_scored(pipeline, f"back.{run}@acme-robotics.com")
    assert (back["rule_version"], demo_points(back)) == ("1", 60)

    # a viewer reads the rules and their history, and cannot change them
    viewer = await (await browser.new_context()).new_page()
    await sign_in(viewer, base, "vic", viewer_password, target="/rules")
    assert await viewer.locator("[data-test=new-draft]").count() == 0
    await viewer.goto(f"{base}/rules/versions")
    assert await viewer.locator("[data-test=publish-again]").count() == 0
    cookies = {c["name"]: c["value"] for c in await viewer.context.cookies()}
    token = cookies.get("leadflow_csrf", "")
    async with httpx.AsyncClient(base_url=base, cookies=cookies) as as_viewer:
        refused = await as_viewer.post("/rules/drafts", data={"csrftoken": token})
        refused_publish = await as_viewer.post(
            "/rules/versions/2/publish",
            data={"csrftoken": token, "note": "mine", "expected_live": "1"},
        )
    assert (refused.status_code, refused_publish.status_code) == (403, 403)
    live = await api(pipeline, "score", "/v1/rules")
    assert live["live"] == "1"

    # every change is in the audit log, with who and the note
    admin_password = add_person(pipeline, "ada", "admin")
    admin = await (await browser.new_context()).new_page()
    await sign_in(admin, base, "ada", admin_password, target="/admin/audit")
    audit = await admin.inner_text("[data-test=audit]")
    assert "published rules version 2" in audit
    assert "demo requests were over-weighted" in audit
    assert "published rules version 1 again" in audit


async def test_an_out_of_office_toggle_sends_the_next_mql_to_another_rep(
    pipeline: Pipeline, browser: Browser, artifacts: Path, tmp_path: Path
) -> None:
    # The default routing without working hours: whatever the time of day, both reps of the
    # team are in hours (with hours, the evening leaves one rep of sdr-amer, in Chicago, and
    # the team overflows once that rep is away).
    routing = yaml.safe_load(DEFAULT_ROUTING_FILE.read_text())
    for team in routing["teams"]:
        team.pop("working_hours", None)
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(yaml.safe_dump(routing, sort_keys=False))
    pipeline.addresses.service_env["router"] = {"LEADFLOW_ROUTER_ROUTING_FILE": str(routing_file)}
    await pipeline.start("ingest", "enrich", "score", "router", "console")
    base = f"http://127.0.0.1:{pipeline.addresses.console_port}"
    editor_password = add_person(pipeline, "eve", "editor")
    run = uuid.uuid4().hex[:6]

    async def owner_of_next_mql(n: int) -> dict[str, Any]:
        user = f"u-{run}-{n}"
        await identify_and_track(pipeline, user, f"vp.{n}.{run}@acme-robotics.com",
                                 "Demo Requested")  # fmt: skip
        lead_id = (await explained(pipeline, f"vp.{n}.{run}@acme-robotics.com"))["lead_id"]
        records = await pipeline.read(
            ROUTING_SDR.full_name(pipeline.prefix),
            until=lambda rs: any(r.json()["lead_id"] == lead_id for r in rs),
        )
        decision = next(r.json() for r in records if r.json()["lead_id"] == lead_id)
        return dict(decision)

    first = await owner_of_next_mql(0)
    assert first["owner"] is not None, first
    away_rep, team = first["owner"]["id"], first["owner"]["team"]

    page = await (await browser.new_context(viewport={"width": 1500, "height": 1000})).new_page()
    await sign_in(page, base, "eve", editor_password, target="/routing")
    row = page.locator(f"tr[data-rep='{away_rep}']")
    await row.locator("[data-test=away]").click()  # today, the form's default range
    await page.wait_for_url(base + "/routing")
    assert "Routing version 2 is live" in await page.inner_text("[data-test=flash]")
    assert "out of office" in await page.inner_text(f"tr[data-rep='{away_rep}'] .today")
    await page.screenshot(path=artifacts / "routing-reps.png", full_page=True)
    await page.locator("[data-test=reps]").screenshot(path=artifacts / "console-routing-reps.png")

    # round robin would alternate; with one rep away, both go to the other
    second, third = await owner_of_next_mql(1), await owner_of_next_mql(2)
    assert second["owner"]["team"] == third["owner"]["team"] == team
    assert away_rep not in {second["owner"]["id"], third["owner"]["id"]}
    assert second["routing_version"] == third["routing_version"] == "2"

    # teams, territories and tracks: the same draft, check, simulate, publish flow (YAML)
    await page.goto(f"{base}/routing")
    await page.click("[data-test=new-draft]")
    await page.wait_for_selector("[data-test=yaml]")
    text = await page.input_value("[data-test=yaml]")
    assert "sdr-inbound" in text
    await page.fill("[data-test=yaml]", text.replace("default_team: sdr-inbound",
                                                      "default_team: no-such-team"))  # fmt: skip
    await page.click("[data-test=check-yaml]")
    problems = await page.inner_text("[data-test=problems]")
    assert "default_team: 'no-such-team' is not one of the teams" in problems
    assert await page.is_disabled("[data-test=publish]")
    await page.fill("[data-test=yaml]", text.replace("daily_cap: 200", "daily_cap: 150", 1))
    await page.click("[data-test=check-yaml]")
    assert await page.locator("[data-test=problems]").count() == 0
    await page.click("[data-test=simulate]")
    await page.wait_for_selector("[data-test=simulation-result]", timeout=60_000)
    simulation_id = await page.get_attribute("[data-test=simulation]", "data-simulation")
    state = await api(pipeline, "router", f"/v1/routing/simulations/{simulation_id}")
    assert state["status"] == "done"
    assert state["result"]["replayed"] >= 3  # the MQLs above, from their stored changes
    assert str(state["result"]["replayed"]) in await page.inner_text("[data-test=replayed]")
    assert await shown(page, "owner-changes") == state["result"]["owner_changes"]
    await page.fill("[data-test=note]", "a lower cap for the inbound desk")
    await page.click("[data-test=publish]")
    await page.wait_for_url(base + "/routing")
    assert "Routing version 3 is live" in await page.inner_text("[data-test=flash]")
