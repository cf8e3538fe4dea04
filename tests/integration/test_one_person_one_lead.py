"""One person, one lead, through the real broker and PostgreSQL (ingest, enrich and score as
processes): an imported lead and the same person's website sign-up are one lead; an alias joins
two known userIds, reversibly; an unmerge gives each lead back exactly its own score; a refused
link is counted and shown in the lead's history."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import httpx

from devstack.processes import ServiceProcess
from shared.topics import LEADS_LIFECYCLE
from tests.fixtures.pipeline import WRITE_KEY, Pipeline
from tests.fixtures.polling import eventually

AUTH = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
# Event times in the recent past, shared by a lead and its control twin (decay compares alike).
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

T = TypeVar("T")


async def call(pipeline: Pipeline, kind: str, at: int, **fields: Any) -> str:
    """A tracking call through ingest's HTTP API; returns its messageId."""
    message_id = f"m-{uuid.uuid4().hex[:12]}"
    body = {"messageId": message_id, "timestamp": (T0 + timedelta(minutes=at)).isoformat(),
            **fields}  # fmt: skip
    answer = await pipeline.post(f"/v1/{kind}", body)
    assert answer.status_code == 200, answer.text
    return message_id


async def scored(db: asyncpg.Connection, *message_ids: str) -> list[str]:
    """The leads score counted these messages under, once every one of them is counted."""

    async def probe() -> list[str] | None:
        rows = await db.fetch(
            "SELECT message_id, lead_id FROM score.history WHERE message_id = ANY($1::text[])",
            list(message_ids),
        )
        found = {row["message_id"]: row["lead_id"] for row in rows}
        return [found[m] for m in message_ids] if len(found) == len(message_ids) else None

    counted = await eventually(probe, f"score counted {message_ids}")
    assert counted is not None
    return counted


async def live_leads_with_email(db: asyncpg.Connection, email: str) -> list[str]:
    rows = await db.fetch(
        "SELECT lead_id FROM enrich.leads WHERE email = $1 AND merged_into IS NULL", email
    )
    return [row["lead_id"] for row in rows]


async def test_an_imported_lead_and_the_website_sign_up_of_its_email_are_one_lead(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("ingest", "enrich", "score")
    run = uuid.uuid4().hex[:6]
    email = f"katherine.{run}@initech.com"
    # A webinar list without a user id column: the import knows Katherine by her email only.
    async with httpx.AsyncClient(base_url=pipeline.ingest_url, timeout=30) as client:
        answer = await client.post(
            "/v1/leads/import",
            params={"list": f"webinar-{run}"},
            headers={**AUTH, "Content-Type": "text/csv"},
            content=f"email,name,title,company\n{email},Katherine Ng,VP Sales,Initech\n".encode(),
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["leads"] == 1
    imported = await eventually(lambda: live_leads_with_email(db, email), "the imported lead")

    # She signs up on the website, which knows her by its own userId, and looks at pricing.
    signup = await call(pipeline, "identify", 1, userId=f"nc-{run}", anonymousId=f"web-{run}",
                        traits={"email": email})  # fmt: skip
    pricing = await call(pipeline, "page", 2, anonymousId=f"web-{run}", name="Pricing",
                         properties={"path": "/pricing"})  # fmt: skip
    counted_under = await scored(db, signup, pricing)

    assert await live_leads_with_email(db, email) == imported  # one lead, the imported one
    assert set(counted_under) == set(imported)
    rules = {line["rule_id"] for line in (await pipeline.explain(email))["lines"]}
    assert "vp" in rules  # the imported profile's points (VP Sales)
    assert "pricing-page" in rules  # the website's points
    users = await db.fetch(
        "SELECT value FROM enrich.identities WHERE kind = 'user_id' AND lead_id = $1", imported[0]
    )
    assert [row["value"] for row in users] == [f"nc-{run}"]  # the import claimed no userId


async def test_a_website_sign_up_after_a_legacy_import_that_set_user_id_to_the_email_joins_it(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    """Leads imported before this fix carry userId = email: upgrading needs no data migration."""
    await pipeline.start("ingest", "enrich", "score")
    run = uuid.uuid4().hex[:6]
    email = f"legacy.{run}@initech.com"
    legacy = await call(pipeline, "identify", 0, userId=email, traits={"email": email},
                        context={"import": {"id": f"imp-{run}", "list": "old-list", "row": 2}})  # fmt: skip
    (imported,) = await scored(db, legacy)
    signup = await call(pipeline, "identify", 1, userId=f"nc-{run}", traits={"email": email})

    assert await scored(db, signup) == [imported]
    assert await live_leads_with_email(db, email) == [imported]


async def lead_state(db: asyncpg.Connection, lead_id: str) -> dict[str, Any]:
    """What score holds of a lead that decay cannot blur: its stage, its fit per rule, and its
    behaviour awards as (rule, points, event time)."""
    row = await db.fetchrow("SELECT stage, fit FROM score.leads WHERE lead_id = $1", lead_id)
    assert row is not None
    lines = await db.fetch(
        "SELECT kind, rule_id, points, event_time FROM score.ledger WHERE lead_id = $1", lead_id
    )
    fit: Counter[str] = Counter()
    for line in lines:
        if line["kind"] == "fit":
            fit[line["rule_id"]] += line["points"]
    return {
        "stage": row["stage"],
        "fit": row["fit"],
        "fit_by_rule": {rule: points for rule, points in fit.items() if points},
        "behaviour": Counter(
            (line["rule_id"], line["points"], line["event_time"])
            for line in lines
            if line["kind"] != "fit"
        ),
    }


async def two_people(pipeline: Pipeline, suffix: str) -> tuple[list[str], list[str]]:
    """Ana's calls (a VP who asked for a demo) and Ben's (a known visitor who saw pricing), each
    under their own userId; with `suffix`, the same calls as the control twins never merged."""
    ana = [
        await call(pipeline, "identify", 0, userId=f"ana{suffix}", anonymousId=f"a{suffix}",
                   traits={"email": f"ana{suffix}@northwind.io", "title": "VP Sales",
                           "company": "Northwind"}),
        await call(pipeline, "track", 1, anonymousId=f"a{suffix}", event="Demo Requested"),
        await call(pipeline, "page", 2, anonymousId=f"a{suffix}", properties={"path": "/pricing"}),
    ]  # fmt: skip
    ben = [
        await call(pipeline, "identify", 3, userId=f"ben{suffix}", anonymousId=f"b{suffix}",
                   traits={"email": f"ben{suffix}@fernhill.io"}),
        await call(pipeline, "page", 4, anonymousId=f"b{suffix}", properties={"path": "/pricing"}),
    ]  # fmt: skip
    return ana, ben


async def test_an_alias_joins_two_known_user_ids_and_an_unmerge_gives_each_its_own_score_back(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("ingest", "enrich", "score")
    run = uuid.uuid4().hex[:6]
    ana_calls, ben_calls = await two_people(pipeline, f"-{run}")
    control_ana_calls, control_ben_calls = await two_people(pipeline, f"-{run}-control")
    (ana,) = set(await scored(db, *ana_calls))
    (ben,) = set(await scored(db, *ben_calls))
    (control_ana,) = set(await scored(db, *control_ana_calls))
    (control_ben,) = set(await scored(db, *control_ben_calls))
    assert ana != ben
    # Alone, Ana and her control twin score the same: the twins are a fair comparison.
    assert await lead_state(db, ana) == await lead_state(db, control_ana)

    # Ben's product account and Ana's are one person, says an alias: Ben's userId stays.
    alias = await call(pipeline, "alias", 10, previousId=f"ana-{run}", userId=f"ben-{run}")
    assert await scored(db, alias) == [ben]
    merge = await db.fetchrow(
        "SELECT merge_id, aliased FROM enrich.merges WHERE merged_lead_id = $1", ana
    )
    assert merge is not None
    assert merge["aliased"]
    merged = await eventually(
        lambda: db.fetchval("SELECT merged_into FROM score.leads WHERE lead_id = $1", ana),
        "score folded Ana into Ben",
    )
    assert merged == ben
    during = await lead_state(db, ben)
    assert during != await lead_state(db, control_ben)  # the merge changed Ben's score
    assert during["stage"] == "mql"  # Ana's demo request qualified the merged lead

    # An operator reverses it; both leads are exactly what each would be alone.
    cli = ServiceProcess("enrich", pipeline.addresses, log_file=None)
    await asyncio.to_thread(cli.run_to_end, "unmerge", merge["merge_id"], "--by", "ops@test")

    async def unmerged() -> bool:
        return bool(
            await db.fetchval(
                "SELECT count(*) FROM score.identity_notes WHERE what = 'unmerged'"
                " AND lead_id = ANY($1::text[])",
                [ana, ben],
            )
            == 2
            and await db.fetchval(
                "SELECT merged_into IS NULL FROM score.leads WHERE lead_id = $1", ana
            )
        )

    await eventually(unmerged, "score applied the unmerge")
    assert await lead_state(db, ana) == await lead_state(db, control_ana)
    assert await lead_state(db, ben) == await lead_state(db, control_ben)
    # Ben qualified only with Ana's points: the stage change back is emitted.
    records = await pipeline.read(
        LEADS_LIFECYCLE.full_name(pipeline.prefix),
        until=lambda rs: any(
            r.json()["lead_id"] == ben and r.json()["reason"].startswith("unmerge") for r in rs
        ),
    )
    back = [r.json() for r in records if r.json()["lead_id"] == ben]
    assert (back[-1]["from_stage"], back[-1]["to_stage"]) == ("mql", "lead")
    # The userIds are each lead's own again: Ana's next call counts for Ana.
    later = await call(pipeline, "track", 20, userId=f"ana-{run}", event="Webinar Attended")
    assert await scored(db, later) == [ana]
    story = (await pipeline.explain(ben))["identity"]
    assert [line["what"] for line in story] == ["merged", "unmerged"]


async def test_a_refused_link_is_counted_and_shown_in_the_leads_history(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start("ingest", "enrich", "score")
    run = uuid.uuid4().hex[:6]
    email = f"shared.{run}@initech.com"
    first = await call(pipeline, "identify", 0, userId=f"u1-{run}", traits={"email": email})
    # u1 holds the email before u2 comes (keyed by userId, the two go to different partitions).
    await scored(db, first)
    # Another account with the same email (a shared mailbox): the guardrail keeps two leads.
    second = await call(pipeline, "identify", 1, userId=f"u2-{run}", traits={"email": email})
    placeholder = await call(pipeline, "alias", 2, previousId="undefined", userId=f"u2-{run}")
    owner, other, aliased = await scored(db, first, second, placeholder)

    assert owner != other
    assert aliased == other
    notes = await db.fetch(
        "SELECT what, detail, other_lead_id FROM score.identity_notes WHERE lead_id = $1"
        " ORDER BY at",
        other,
    )
    assert [(n["what"], n["other_lead_id"]) for n in notes] == [("refused", owner),
                                                                ("refused", None)]  # fmt: skip
    assert "another userId" in notes[0]["detail"]
    assert email not in notes[0]["detail"]
    assert "previousId" in notes[1]["detail"]
    assert [line["what"] for line in (await pipeline.explain(other))["identity"]] == [
        "refused",
        "refused",
    ]
    port = pipeline.addresses.health_ports["enrich"]
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert (
        'leadflow_enrich_identity_refusals_total{kind="email",reason="another_user_id"} 1.0'
        in metrics
    )
    assert (
        "leadflow_enrich_identity_refusals_total"
        '{kind="anonymous_id",reason="placeholder_previous_id"} 1.0' in metrics
    )


async def test_unmerging_an_absorbed_visitor_gives_it_back_the_history_re_attributed_to_the_lead(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    """An anonymous device absorbed by an identify (its history re-emitted under the known lead)
    and unmerged: the visitor's page views count for the visitor again, not for the lead."""
    await pipeline.start("ingest", "enrich", "score")
    run = uuid.uuid4().hex[:6]

    async def calls(suffix: str, *, device: str) -> tuple[list[str], list[str]]:
        known = [
            await call(pipeline, "identify", 0, userId=f"cy{suffix}", anonymousId=f"laptop{suffix}",
                       traits={"email": f"cy{suffix}@northwind.io", "title": "Director of IT"}),
        ]  # fmt: skip
        # Cy is known before the phone's calls: they are keyed by another device, so on another
        # partition, and enrich could take the phone's identify first (no merge, then).
        await scored(db, *known)
        visitor = [
            await call(pipeline, "page", 1, anonymousId=f"phone{suffix}",
                       properties={"path": "/pricing"}),
            await call(pipeline, "track", 2, anonymousId=f"phone{suffix}", event="Demo Requested"),
        ]  # fmt: skip
        # The same person logs in on the phone (for the twin: on a device never seen before).
        known.append(await call(pipeline, "identify", 3, userId=f"cy{suffix}", anonymousId=device))
        return known, visitor

    known_calls, visitor_calls = await calls(f"-{run}", device=f"phone-{run}")
    twin_calls, twin_visitor_calls = await calls(f"-{run}-twin", device=f"tablet-{run}-twin")
    (cy,) = set(await scored(db, *known_calls))
    (twin,) = set(await scored(db, *twin_calls))
    (twin_visitor,) = set(await scored(db, *twin_visitor_calls))
    assert set(await scored(db, *visitor_calls)) == {cy}  # re-attributed to Cy
    merge = await db.fetchrow(
        "SELECT merge_id, merged_lead_id, history_replayed FROM enrich.merges"
        " WHERE surviving_lead_id = $1",
        cy,
    )
    assert merge is not None
    assert merge["history_replayed"]
    visitor = merge["merged_lead_id"]
    assert await lead_state(db, cy) != await lead_state(db, twin)

    cli = ServiceProcess("enrich", pipeline.addresses, log_file=None)
    await asyncio.to_thread(cli.run_to_end, "unmerge", merge["merge_id"], "--by", "ops@test")

    async def given_back() -> bool:
        return bool(
            await db.fetchval(
                "SELECT merged_into IS NULL FROM score.leads WHERE lead_id = $1", visitor
            )
        )

    await eventually(given_back, "score applied the unmerge")
    assert await lead_state(db, cy) == await lead_state(db, twin)
    assert await lead_state(db, visitor) == await lead_state(db, twin_visitor)
