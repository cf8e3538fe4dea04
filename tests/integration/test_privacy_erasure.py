"""Erasure end to end, through the real broker and PostgreSQL with every service as a process:
a person who arrived anonymously, identified, was merged with a second identity, became an MQL,
was routed to an SDR and was accepted by sales is erased by email through enrich's API. Then no
store of any service holds anything of hers, every service reported its part, her new calls are
dropped and counted, and everybody else's scores and decisions are as they were."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from confluent_kafka import Producer

from shared.codec import encode
from shared.contracts import CrmFeedback
from shared.topics import CRM_FEEDBACK, PRIVACY_ERASURES, ROUTING_SDR
from tests.fixtures.pipeline import WRITE_KEY, Pipeline
from tests.fixtures.polling import eventually
from tests.fixtures.privacy import traces_of

SERVICES = ("ingest", "enrich", "score", "router", "console")
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15"


class Person:
    """Someone who comes to the website: unique values per test, so a trace is unambiguous."""

    def __init__(self, first: str, last: str, domain: str) -> None:
        tag = uuid.uuid4().hex[:6]
        self.email = f"{first.lower()}.{last.lower()}.{tag}@{domain}"
        self.first, self.last = first, f"{last}{tag}"
        self.phone = f"+44 20 7946 {int(tag, 16) % 10_000:04d}"
        self.user_id = f"usr-{tag}"
        self.laptop, self.phone_device = f"anon-{tag}-laptop", f"anon-{tag}-phone"
        octet = int(tag[:2], 16)
        self.laptop_ip, self.phone_ip = f"203.0.113.{octet}", f"198.51.100.{octet}"

    @property
    def traces(self) -> list[str]:
        """What must not be found anywhere after her erasure."""
        return [self.email, self.last, self.phone, self.user_id, self.laptop, self.phone_device,
                self.laptop_ip, self.phone_ip]  # fmt: skip


async def arrives_and_asks_for_a_demo(pipeline: Pipeline, person: Person) -> None:
    """Anonymous on a laptop, identifies there; later anonymous on a phone, which identifies
    with her userId (the phone's lead is merged into hers); then asks for a demo."""
    calls: list[tuple[str, dict[str, Any]]] = [
        ("page", {"anonymousId": person.laptop, "name": "/pricing",
                  "context": {"ip": person.laptop_ip, "userAgent": BROWSER}}),
        ("identify", {"anonymousId": person.laptop, "context": {"ip": person.laptop_ip},
                      "traits": {"email": person.email, "firstName": person.first,
                                 "lastName": person.last, "phone": person.phone,
                                 "title": "VP of Sales", "company": "Acme Robotics"}}),
        ("page", {"anonymousId": person.phone_device, "name": "/customers",
                  "context": {"ip": person.phone_ip, "userAgent": BROWSER}}),
        ("identify", {"anonymousId": person.phone_device, "userId": person.user_id,
                      "traits": {"email": person.email}}),
        ("track", {"userId": person.user_id, "event": "Demo Requested"}),
    ]  # fmt: skip
    for kind, body in calls:
        answer = await pipeline.post(f"/v1/{kind}", body)
        assert answer.status_code == 200, answer.text


async def sdr_decision(pipeline: Pipeline, email: str) -> dict[str, Any]:
    records = await pipeline.read(
        ROUTING_SDR.full_name(pipeline.prefix),
        until=lambda records: any(r.json()["email"] == email for r in records),
        timeout_s=60,
    )
    decision: dict[str, Any] = next(r.json() for r in records if r.json()["email"] == email)
    return decision


def report_accepted(pipeline: Pipeline, lead_id: str) -> None:
    """The CRM says sales accepted the lead (by lead id, as a CRM that got the decision does)."""
    feedback = CrmFeedback(
        feedback_id=f"crm-{uuid.uuid4().hex[:8]}", lead_id=lead_id, outcome="accepted",
        owner_id="rep-1", at=datetime.now(UTC),
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": pipeline.addresses.kafka_bootstrap})
    producer.produce(CRM_FEEDBACK.full_name(pipeline.prefix), encode(feedback), lead_id.encode())
    assert producer.flush(30) == 0


async def picture_of(db: asyncpg.Connection, lead_ids: list[str]) -> dict[str, Any]:
    """Other people's scores and decisions, to compare before and after."""
    scores = await db.fetch(
        "SELECT lead_id, stage, fit, behaviour, total FROM score.leads"
        " WHERE lead_id = ANY($1::text[]) ORDER BY lead_id",
        lead_ids,
    )
    decisions = await db.fetch(
        "SELECT decision_id, lead_id, route, closed_at FROM router.decisions"
        " WHERE lead_id = ANY($1::text[]) ORDER BY decision_id",
        lead_ids,
    )
    return {"scores": [dict(r) for r in scores], "decisions": [dict(r) for r in decisions]}


async def dropped_calls(pipeline: Pipeline) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(pipeline.addresses.health_url("enrich", "/metrics"))).text
    found = re.search(r"^leadflow_enrich_do_not_track_dropped_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def erasure_api(pipeline: Pipeline, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, headers=pipeline.addresses.api_headers) as client:
        return await client.request(method, pipeline.addresses.api_url("enrich", path), **kwargs)


async def test_an_erased_person_is_gone_from_every_store_and_not_collected_again(
    pipeline: Pipeline, db: asyncpg.Connection
) -> None:
    await pipeline.start(*SERVICES)
    ada = Person("Ada", "Lovelace", "acme-robotics.com")
    others = [Person("Bob", "Stone", "acme-robotics.com"), Person("Cleo", "Park", "initech.com")]
    for person in [ada, *others]:
        await arrives_and_asks_for_a_demo(pipeline, person)
    decision = await sdr_decision(pipeline, ada.email)
    report_accepted(pipeline, decision["lead_id"])
    other_leads = [(await sdr_decision(pipeline, p.email))["lead_id"] for p in others]
    await eventually(
        lambda: db.fetchval(
            "SELECT stage FROM score.leads WHERE lead_id = $1", decision["lead_id"]
        ),
        "sales accepted her: SQL",
        until=lambda stage: stage == "sql",
    )
    await eventually(
        lambda: db.fetchval(
            "SELECT count(*) FROM console.feedback WHERE lead_id = $1", decision["lead_id"]
        ),
        "the console has her feedback",
    )
    assert len(await traces_of(db, ada.traces)) > 10  # she is everywhere before
    before = await picture_of(db, other_leads)

    # A website's write key is not a client of the services' APIs.
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.post(
            pipeline.addresses.api_url("enrich", "/v1/erasures"),
            json={"email": ada.email, "reason": "GDPR art. 17"},
            headers={"Authorization": f"Bearer {WRITE_KEY}"},
        )
    assert refused.status_code == 401
    malformed = await erasure_api(
        pipeline, "POST", "/v1/erasures", json={"email": "not an address", "reason": "GDPR"}
    )
    assert malformed.status_code == 400
    assert "not a valid address" in malformed.json()["error"]

    asked = await erasure_api(
        pipeline, "POST", "/v1/erasures",
        json={"email": ada.email.upper(), "reason": "GDPR art. 17, ticket 4411", "by": "dpo"},
    )  # fmt: skip
    assert asked.status_code == 202, asked.text
    request_id = asked.json()["request_id"]

    async def request_status() -> dict[str, Any]:
        answer = await erasure_api(pipeline, "GET", f"/v1/erasures/{request_id}")
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        return status

    done = await eventually(
        request_status, "every service erased its part", until=lambda s: s["status"] == "complete"
    )
    assert set(done["services"]) == {"enrich", "score", "router", "console"}
    assert all(part["status"] == "complete" for part in done["services"].values())
    assert done["leads_found"] == 2  # her lead and her phone's, merged into it
    assert done["requested_by"] == "dpo via local-stack"
    notices = await pipeline.read(
        PRIVACY_ERASURES.full_name(pipeline.prefix), until=lambda records: bool(records)
    )
    assert decision["lead_id"] in notices[0].json()["lead_ids"]

    assert await traces_of(db, ada.traces) == []
    assert await picture_of(db, other_leads) == before

    # She comes back: her calls are dropped and counted, never stored.
    dropped = await dropped_calls(pipeline)
    for kind, body in [
        ("page", {"anonymousId": ada.laptop, "context": {"ip": ada.laptop_ip}}),
        ("identify", {"anonymousId": "anon-new-device", "traits": {"email": ada.email}}),
    ]:
        assert (await pipeline.post(f"/v1/{kind}", body)).status_code == 200
    await eventually(
        lambda: dropped_calls(pipeline), "her calls dropped", until=lambda n: n == dropped + 2
    )
    marker = f"marker-{uuid.uuid4().hex[:8]}"
    answer = await pipeline.post(
        "/v1/track", {"userId": others[0].user_id, "event": "Webinar Attended", "messageId": marker}
    )
    assert answer.status_code == 200
    await eventually(
        lambda: db.fetchval("SELECT count(*) FROM score.history WHERE message_id = $1", marker),
        "score took a call sent after hers",
    )
    assert await traces_of(db, [*ada.traces, "anon-new-device"]) == []
