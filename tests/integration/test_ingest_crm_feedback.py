"""A CRM reports what sales did over HTTP (`POST /v1/crm/feedback` on ingest), with its own key:
what lands on `crm.feedback` (the contract's key and value), who is refused (a website's key:
403; no key: 401), bad input (400 with reasons, nothing published), the limits (413, 429), the
README's example as written, and an acceptance reported this way stopping router's SLA timer.
Real uvicorn, real broker."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest

from devstack.processes import REPO_ROOT
from services.ingest.api import create_app
from services.ingest.config import IngestSettings, WriteKey
from services.ingest.crm_feedback import MAX_FEEDBACK_BYTES, PATH
from services.ingest.publisher import BrokerUnavailable, EventPublisher
from services.ingest.wire import EncodedEvent
from shared.codec import decode, encode
from shared.contracts import (
    Consent,
    CrmFeedback,
    LeadProfile,
    LifecycleChanged,
    Score,
    Stage,
)
from shared.topics import CRM_FEEDBACK, EVENTS_RAW, LEADS_LIFECYCLE, ROUTING_SDR, Topic
from tests.fixtures.ingest import WEBSITE_KEY, WRITE_KEYS, Ingest, StartIngest, basic
from tests.fixtures.pipeline import Pipeline, Record

CRM_KEY = "wk-crm-salesforce-5d21"
KEYS = {
    **WRITE_KEYS,
    "salesforce": WriteKey.of(
        CRM_KEY, source="salesforce", scopes=["feedback"], limit_per_address=False
    ),
}
EMAIL = "maria.gonzalez@northwind-logistics.com"


def report(**fields: Any) -> dict[str, Any]:
    return {
        "feedback_id": f"sf-task-{uuid.uuid4().hex[:8]}",
        "lead_id": "lead-1",
        "outcome": "accepted",
        "owner_id": "rep-grace",
        "at": "2026-03-02T09:18:52Z",
    } | fields


async def feedback_records(ingest: Ingest, count: int) -> list[Record]:
    return await ingest.reader.read(
        CRM_FEEDBACK.full_name(ingest.reader.prefix), until=lambda records: len(records) >= count
    )


async def nothing_on(ingest: Ingest, topic: Topic) -> None:
    records = await ingest.reader.read_all(topic.full_name(ingest.reader.prefix), settle_s=1)
    assert records == []


async def test_a_crm_keys_reports_land_on_crm_feedback_keyed_by_lead_id_else_email(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS)
    one = report(feedback_id="sf-task-1", lead_id="lead-1", email=EMAIL, reason="good fit")
    by_email = report(
        feedback_id="hs-note-2",
        lead_id=None,
        email=EMAIL,
        outcome="disqualified",
        at="2026-03-04T10:05:17.250+01:00",
    )
    won = report(feedback_id="sf-opp-3", lead_id="lead-3", outcome="won")

    single = await ingest.post(PATH, one, key=CRM_KEY)
    assert (single.status_code, single.json()) == (200, {"success": True})
    batch = gzip.compress(orjson.dumps({"batch": [by_email, won]}))
    answer = await ingest.post(PATH, batch, key=CRM_KEY, **{"Content-Encoding": "gzip"})
    assert (answer.status_code, answer.json()) == (200, {"success": True}), answer.text

    records = await feedback_records(ingest, 3)
    assert len(records) == 3
    by_id = {decode(r.value, CrmFeedback).feedback_id: r for r in records}
    assert [by_id[i].key for i in ("sf-task-1", "hs-note-2", "sf-opp-3")] == [
        b"lead-1",
        EMAIL.encode(),
        b"lead-3",
    ]
    for sent in (one, by_email, won):
        record = by_id[sent["feedback_id"]]
        expected = CrmFeedback.model_validate(sent)
        assert decode(record.value, CrmFeedback) == expected
        assert record.value == encode(expected)  # what a CRM producing it itself writes
    # Reports are not events: nothing on events.raw.
    await nothing_on(ingest, EVENTS_RAW)


async def test_a_websites_key_gets_403_and_a_missing_or_unknown_key_401(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS)

    website = await ingest.post(PATH, report(), key=WEBSITE_KEY)
    assert website.status_code == 403
    assert website.json()["success"] is False
    assert "lacks the scope 'feedback'" in website.json()["error"]
    for key in (None, "wk-guessed"):
        refused = await ingest.post(PATH, report(), key=key)
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"success": False, "error": "missing or unknown write key"}
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
    # The CRM's key reports feedback and nothing else.
    track = await ingest.post("/v1/track", {"userId": "u-1", "event": "X"}, key=CRM_KEY)
    assert track.status_code == 403
    assert "lacks the scope 'track'" in track.json()["error"]

    await nothing_on(ingest, CRM_FEEDBACK)


async def test_bad_input_gets_400_with_a_reason_per_report_and_nothing_is_published(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS)

    batch = {
        "batch": [
            report(),
            report(at="2026-03-02T09:18:52"),
            report(lead_id=None, email=None),
            report(outcome="maybe", email=EMAIL),
        ]
    }
    answer = await ingest.post(PATH, batch, key=CRM_KEY)
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert errors[:2] == [
        "batch[1]: at: timestamp must carry a time zone (ISO-8601 with offset or Z)",
        "batch[2]: feedback needs lead_id or email",
    ]
    assert errors[2].startswith("batch[3]: outcome: Input should be 'accepted'")
    assert EMAIL not in answer.text
    for body, reason in [
        (b"{not json", "body is not valid JSON"),
        (b"[]", "body must be a JSON object"),
        (orjson.dumps({"batch": []}), "batch: must hold at least one report"),
    ]:
        answer = await ingest.post(PATH, body, key=CRM_KEY)
        assert answer.status_code == 400, answer.text
        assert answer.json()["errors"][0].startswith(reason), answer.json()

    await nothing_on(ingest, CRM_FEEDBACK)


async def test_too_big_bodies_get_413_and_the_rate_limit_429_with_retry_after(
    start_ingest: StartIngest,
) -> None:
    ingest = await start_ingest(write_keys=KEYS, rate_limit_events_per_s=0.1, rate_limit_burst=3)

    padded = {"batch": [report(reason="x" * 20_000) for _ in range(30)]}  # > 500 KB
    assert len(orjson.dumps(padded)) > MAX_FEEDBACK_BYTES
    large = await ingest.post(PATH, padded, key=CRM_KEY)
    assert large.status_code == 413
    assert large.json() == {
        "success": False,
        "error": "body is larger than 500 KB (the limit of this endpoint)",
    }
    many = await ingest.post(PATH, {"batch": [report()] * 1_001}, key=CRM_KEY)
    assert many.status_code == 413
    assert "more than 1,000" in many.json()["error"]

    assert (await ingest.post(PATH, {"batch": [report(), report()]}, key=CRM_KEY)).is_success
    limited = await ingest.post(PATH, {"batch": [report(), report()]}, key=CRM_KEY)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert "salesforce" in limited.json()["error"]
    assert len(await feedback_records(ingest, 2)) == 2


class _BrokerAway:
    """A publisher whose broker never acknowledges."""

    async def publish(self, events: list[EncodedEvent], *, topic: Topic) -> None:
        raise BrokerUnavailable("no acknowledgement in time")


async def test_an_unacknowledged_report_gets_503_with_retry_after() -> None:
    settings = IngestSettings(write_keys=KEYS, retry_after_s=7)
    app = create_app(settings, cast(EventPublisher, _BrokerAway()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        answer = await client.post(PATH, json=report(), headers=basic(CRM_KEY))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.json()["success"] is False


# ---- end to end: an acceptance over HTTP stops the SLA timer ----------------------------------

ROUTING = """\
version: crm-feedback-test
teams:
  - name: sdr
    reps:
      - {id: rep-a, name: Rep A, email: a@example.com}
      - {id: rep-b, name: Rep B, email: b@example.com}
default_team: sdr
fallback_queue: sdr-unassigned
nurture: {default: general-nurture}
sla:
  default: 3s
"""


def mql(lead_id: str) -> LifecycleChanged:
    now = datetime.now(UTC)
    return LifecycleChanged(
        transition_id=f"{lead_id}:mql:msg-1",
        lead_id=lead_id,
        from_stage=Stage.LEAD,
        to_stage=Stage.MQL,
        reason="total score 110 >= MQL threshold 80",
        at=now,
        received_at=now,
        profile=LeadProfile(email=f"{lead_id}@example.com", first_name="Lee"),
        consent=Consent(),
        score=Score(fit=35, behaviour=75, total=110, grade="A", band=1, priority="A1"),
    )


@pytest.mark.slow  # about 11 s, the router's own feedback tests cover its side: `make test-slow`
async def test_an_acceptance_reported_over_http_stops_the_routers_sla_timer(
    start_ingest: StartIngest, pipeline: Pipeline, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(ROUTING)
    pipeline.addresses.service_env["router"] = {
        "LEADFLOW_ROUTER_ROUTING_FILE": str(routing),
        "LEADFLOW_ROUTER_SLA_CHECK_INTERVAL_S": "0.3",
        "LEADFLOW_ROUTER_SLA_RECHECK_S": "1",
    }
    _, ingest = await asyncio.gather(pipeline.start("router"), start_ingest(write_keys=KEYS))
    lead = f"lead-{uuid.uuid4().hex[:8]}"
    change = mql(lead)
    pipeline.produce_raw(LEADS_LIFECYCLE, encode(change), key=lead.encode())
    topic = ROUTING_SDR.full_name(pipeline.prefix)
    (first,) = await pipeline.read(topic, until=lambda records: len(records) >= 1)
    decision = first.json()

    accepted = report(
        feedback_id=f"sf-task-{lead}",
        lead_id=lead,
        owner_id=decision["owner"]["id"],
        at=datetime.now(UTC).isoformat(),
    )
    answer = await ingest.post(PATH, accepted, key=CRM_KEY)
    assert answer.status_code == 200, answer.text
    again = await ingest.post(PATH, accepted, key=CRM_KEY)  # resent: applied once
    assert again.status_code == 200

    due = datetime.fromisoformat(decision["sla_due_at"])
    await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2)
    history = await pipeline.routing_history(lead)
    assert history["decisions"][0]["closed_reason"] == "crm: accepted", history
    assert history["sla_breaches"] == []
    decisions = await pipeline.read_all(topic, settle_s=0.5)
    assert [r.json()["strategy"] for r in decisions] == ["round_robin"], "never reassigned"


# ---- the README's example ---------------------------------------------------------------------


def readme_example() -> list[tuple[str, str]]:
    """The commands of the README's console block for CRM feedback, each with what it prints."""
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"^```console\n(.*?)^```", readme, flags=re.DOTALL | re.MULTILINE)
    (block,) = [block for block in blocks if "/v1/crm/feedback" in block]
    steps: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], ""))
        elif line.startswith(" ") and not steps[-1][1]:
            steps[-1] = (steps[-1][0] + "\n" + line, "")
        else:
            steps[-1] = (steps[-1][0], steps[-1][1] + line + "\n")
    return steps


def bash(command: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """`command` run as a person would paste it, from the repository's root."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=REPO_ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_readmes_example_makes_a_crm_key_and_reports_with_it(
    start_ingest: StartIngest,
) -> None:
    if shutil.which("curl") is None:
        pytest.skip("no curl on this machine")
    (new_key, shown), (curl, answer) = readme_example()
    made = await asyncio.to_thread(bash, new_key)
    assert made.returncode == 0, made.stderr
    key_line, entry_line = made.stdout.splitlines()
    assert key_line.startswith(shown.splitlines()[0].split("<")[0])
    entry = json.loads(entry_line.split(": ", 1)[1])
    assert entry["salesforce"]["scopes"] == ["feedback"]
    ingest = await start_ingest(write_keys={**WRITE_KEYS, **entry})

    sent = await asyncio.to_thread(
        bash, curl, CRM_KEY=key_line.rsplit(" ", 1)[1], INGEST_URL=f"http://127.0.0.1:{ingest.port}"
    )
    assert sent.stdout == answer.strip(), sent.stdout + sent.stderr
    (record,) = await feedback_records(ingest, 1)
    assert record.key == b"3f2b8c1e-7d4a-4e9b-a6c2-5b1d9f0e8a47"
    assert decode(record.value, CrmFeedback).feedback_id == "sf-task-00T5g00000Lk3QmEAJ"
