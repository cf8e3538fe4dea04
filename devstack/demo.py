"""Demo traffic: visitors of a B2B website, posted to ingest like a Segment client would.

Personas make the routing visible: a VP who asks for a demo (an MQL at once, to an SDR), a
manager who reads content (nurture), a student on the careers page (nowhere near sales), an
anonymous visitor who identifies later.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

FIRST = ["Vera", "Sam", "Noor", "Luis", "Mei", "Tom", "Ana", "Raj", "Ines", "Ola", "Kai", "Zoe"]
LAST = ["Kim", "Patel", "Novak", "Garcia", "Chen", "Berg", "Silva", "Rossi", "Okafor", "Lund"]
COMPANIES = [
    ("Acme Robotics", "acme-robotics.com"),
    ("Globex", "globex.com"),
    ("Initech", "initech.com"),
    ("Umbrella Health", "umbrella-health.com"),
    ("Hooli", "hooli.io"),
    ("Vandelay", "vandelay.co"),
]


@dataclass(frozen=True)
class Persona:
    title: str
    journey: list[tuple[str, dict[str, Any]]]  # (event, properties)
    free_mail: bool = False


PERSONAS = [
    Persona("VP of Sales", [("Page Viewed", {"path": "/pricing"}), ("Demo Requested", {})]),
    Persona("Head of Marketing", [("Webinar Attended", {}), ("Contact Sales", {})]),
    Persona("Marketing Manager", [("Content Downloaded", {}), ("Page Viewed", {"path": "/blog"})]),
    Persona("Software Engineer", [("Trial Started", {}), ("Page Viewed", {"path": "/docs"})]),
    Persona("Student", [("Page Viewed", {"path": "/careers"})], free_mail=True),
    Persona("Director of IT", [("Page Viewed", {"path": "/pricing"}), ("Webinar Attended", {})]),
]


async def play(ingest_url: str, write_key: str, *, rate_per_s: float, stop: asyncio.Event) -> None:
    """Post one visitor journey at a time, about `rate_per_s` journeys per second, until stop."""
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    rng = random.Random()
    async with httpx.AsyncClient(
        base_url=ingest_url, headers={"Authorization": f"Basic {token}"}, timeout=10
    ) as client:
        while not stop.is_set():
            # The stack may be starting or stopping; the next journey tries again.
            with contextlib.suppress(httpx.HTTPError):
                await _journey(client, rng)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=rng.expovariate(rate_per_s))


async def _journey(client: httpx.AsyncClient, rng: random.Random) -> None:
    persona = rng.choice(PERSONAS)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    company, domain = rng.choice(COMPANIES)
    if persona.free_mail:
        domain = "gmail.com"
    anonymous_id = str(uuid.uuid4())
    email = f"{first}.{last}.{rng.randrange(1000)}@{domain}".lower()
    await client.post(
        "/v1/track",
        json={"anonymousId": anonymous_id, "event": "Page Viewed", "properties": {"path": "/"}},
    )
    await client.post(
        "/v1/identify",
        json={
            "anonymousId": anonymous_id,
            "traits": {
                "email": email,
                "firstName": first,
                "lastName": last,
                "title": persona.title,
                "company": company,
            },
        },
    )
    for event, properties in persona.journey:
        await client.post(
            "/v1/track",
            json={"anonymousId": anonymous_id, "event": event, "properties": properties},
        )
