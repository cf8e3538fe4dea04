"""A backfill through the real pipeline: a history from before leadflow, posted through the
tracking API with Segment `timestamp`s four months in the past, builds the stages and scores its
events earn (those of the same calls made today, by a twin lead), and wakes no one: no decision
on routing.sdr or routing.nurture for a moment long past, while a lead of today is routed at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared.topics import LEADS_LIFECYCLE, LEADS_SCORED, ROUTING_NURTURE, ROUTING_SDR
from tests.fixtures.pipeline import Pipeline, Record

AGO = timedelta(days=120)
TRIGGERS = {"known", "lead", "mql", "recycled"}  # the default routing file's sdr and nurture


def ada(name: str) -> list[tuple[timedelta, dict[str, Any]]]:
    """A VP who looks at pricing and asks for a demo: an MQL. (Offset from the history's start,
    call.)"""
    user = f"u-{name}"
    return [
        (
            timedelta(0),
            {
                "type": "identify",
                "userId": user,
                "traits": {
                    "email": f"{name}@acme-robotics.com",
                    "firstName": "Ada",
                    "title": "VP of Sales",
                    "company": "Acme Robotics",
                },
            },
        ),
        (timedelta(hours=1), {"type": "page", "userId": user, "properties": {"path": "/pricing"}}),
        (timedelta(hours=2), {"type": "page", "userId": user, "properties": {"path": "/product"}}),
        (timedelta(hours=3), {"type": "track", "userId": user, "event": "Demo Requested"}),
    ]


def bob(name: str) -> list[tuple[timedelta, dict[str, Any]]]:
    """An anonymous visitor (a page, a download) who signs up an hour later: a lead, his
    anonymous history counted once he is known."""
    anonymous = f"anon-{name}"
    return [
        (timedelta(0), {"type": "page", "anonymousId": anonymous, "properties": {"path": "/blog"}}),
        (
            timedelta(minutes=5),
            {"type": "track", "anonymousId": anonymous, "event": "Content Downloaded"},
        ),
        (
            timedelta(hours=1),
            {
                "type": "identify",
                "anonymousId": anonymous,
                "userId": f"u-{name}",
                "traits": {"email": f"{name}@smallshop.io", "title": "Marketing Manager"},
            },
        ),
    ]


def cy(name: str) -> list[tuple[timedelta, dict[str, Any]]]:
    """Someone who signed up and did nothing since: known."""
    return [
        (
            timedelta(0),
            {"type": "identify", "userId": f"u-{name}", "traits": {"email": f"{name}@initech.com"}},
        )
    ]


PEOPLE = {"ada": (ada, "mql"), "bob": (bob, "lead"), "cy": (cy, "known")}  # and the stage earned


async def post_history(
    pipeline: Pipeline, calls: list[tuple[timedelta, dict[str, Any]]], *, start: datetime
) -> None:
    """The calls in one `/v1/batch`, each `timestamp` at `start` + its offset, sent now (as a
    Segment library sends a backlog: `sentAt` is when it flushes, and ingest's clock-skew
    correction keeps each event's time)."""
    batch = [
        {**call, "messageId": f"{uuid.uuid4()}", "timestamp": (start + offset).isoformat()}
        for offset, call in calls
    ]
    body = {"batch": batch, "sentAt": datetime.now(UTC).isoformat()}
    response = await pipeline.post("/v1/batch", body)
    assert (response.status_code, response.json()) == (200, {"success": True}), response.text


def with_email(email: str) -> Callable[[Record], bool]:
    return lambda record: record.json()["profile"]["email"] == email


async def test_a_backfilled_history_earns_its_stages_and_scores_and_wakes_no_one(
    pipeline: Pipeline,
) -> None:
    await pipeline.start("ingest", "enrich", "score", "router")
    suffix = uuid.uuid4().hex[:6]
    # Each person twice: once 120 days ago (the history), once today (the twin, the same calls
    # at the same offsets). Today's ada is the fresh MQL.
    today = datetime.now(UTC) - timedelta(hours=4)  # every twin's call in the past hours
    emails: dict[tuple[str, str], str] = {}
    for person, (calls, _) in PEOPLE.items():
        for when, start in (("old", today - AGO), ("today", today)):
            name = f"{person}-{when}-{suffix}"
            made = calls(name)
            emails[person, when] = next(c["traits"]["email"] for _, c in made if "traits" in c)
            await post_history(pipeline, made, start=start)
    sdr_topic = ROUTING_SDR.full_name(pipeline.prefix)
    nurture_topic = ROUTING_NURTURE.full_name(pipeline.prefix)

    # score: every lead reaches the stage its events earn.
    def stages(records: list[Record], email: str) -> list[str]:
        return [r.json()["to_stage"] for r in records if with_email(email)(r)]

    lifecycle = await pipeline.read(
        LEADS_LIFECYCLE.full_name(pipeline.prefix),
        until=lambda rs: all(
            stage in stages(rs, emails[person, when])
            for person, (_, stage) in PEOPLE.items()
            for when in ("old", "today")
        ),
        timeout_s=90,
    )
    # router: today's ada gets her sdr decision, today's others their nurture track.
    fresh_mql = emails["ada", "today"]
    sdr = await pipeline.read(
        sdr_topic, until=lambda rs: any(r.json()["email"] == fresh_mql for r in rs), timeout_s=60
    )
    (decision,) = [r.json() for r in sdr if r.json()["email"] == fresh_mql]
    assert decision["stage"] == "mql"
    assert decision["owner"] is not None or decision["queue"] is not None
    assert decision["sla_due_at"] is not None

    # router: wait until it has handled every old change that calls for a decision, one way
    # or the other (a decision, or a row in the lead's routing history).
    async def routing(email: str) -> dict[str, Any]:
        url = pipeline.addresses.api_url("router", f"/v1/leads/{email}/routing")
        async with httpx.AsyncClient(timeout=10, headers=pipeline.addresses.api_headers) as client:
            answer = await client.get(url)
        found = answer.json() if answer.status_code == 200 else {}
        return {"decisions": [], "suppressions": [], **found}

    def triggers(email: str) -> list[str]:
        return [stage for stage in stages(lifecycle, email) if stage in TRIGGERS]

    deadline = time.monotonic() + 60
    for person in PEOPLE:
        email = emails[person, "old"]
        while handled(await routing(email)) < len(triggers(email)):
            assert time.monotonic() < deadline, f"{email}: not all handled{pipeline.logs()}"
            await asyncio.sleep(0.2)
    sdr = await pipeline.read_all(sdr_topic, settle_s=1)
    nurture = await pipeline.read_all(nurture_topic, settle_s=1)
    scored = await pipeline.read_all(LEADS_SCORED.full_name(pipeline.prefix), settle_s=0.5)

    for person in PEOPLE:
        old, twin = emails[person, "old"], emails[person, "today"]
        old_changes = [r.json() for r in lifecycle if with_email(old)(r)]
        twin_changes = [r.json() for r in lifecycle if with_email(twin)(r)]

        # The same stages, by the same moves, with the same scores, as the same calls today.
        def moves(changes: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
            return [(c["from_stage"], c["to_stage"], c["score"]) for c in changes]

        assert moves(old_changes) == moves(twin_changes), person
        assert (await pipeline.explain(old))["stage"] == PEOPLE[person][1]
        assert last_score(scored, old_changes[0]["lead_id"]) == last_score(
            scored, twin_changes[0]["lead_id"]
        ), person
        # ... at the times of the events: ingest, enrich and score kept the past timestamps.
        for change in old_changes:
            at = datetime.fromisoformat(change["at"])
            assert today - AGO <= at <= today - AGO + timedelta(hours=4), (person, change)

        # No one is woken for the old lead; its twin of today is routed as live leads are.
        assert not [r for r in sdr + nurture if r.json()["email"] == old], person
        # (a nurture decision that a later stage replaced while it settled was never sent: the
        # twin's last decision, by its lead's sequence, answers its last trigger)
        twin_decisions = [r.json() for r in sdr + nurture if r.json()["email"] == twin]
        twin_decisions.sort(key=lambda d: d["sequence"])
        assert {d["stage"] for d in twin_decisions} <= set(triggers(twin)), person
        assert twin_decisions[-1]["stage"] == triggers(twin)[-1], person
        history = await routing(old)
        assert history["decisions"] == []
        assert sorted(s["stage"] for s in history["suppressions"]) == sorted(triggers(old))
        for row in history["suppressions"]:
            assert row["reason"].startswith("history: the stage change happened at "), row
            assert row["reason"].endswith(", before the backfill horizon of 72 h"), row


def handled(history: dict[str, Any]) -> int:
    """How many stage changes a routing history shows handled (decided or recorded)."""
    return len(history["decisions"]) + len(history["suppressions"])


def last_score(records: list[Record], lead_id: str) -> dict[str, Any]:
    """The lead's last score from its events (the decay sweep's re-evaluations at the sweep's
    time, `sweep:` message ids, left out: a score valued now, not as the events earned it)."""
    scores = [
        r.json()["score"]
        for r in records
        if r.json()["lead_id"] == lead_id and not r.json()["message_id"].startswith("sweep:")
    ]
    assert scores, f"no score for {lead_id}"
    return dict(scores[-1])
