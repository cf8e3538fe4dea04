"""Demo traffic: visitors of a B2B website, posted to ingest like a Segment client would.

Personas make the routing visible: a VP who asks for a demo (an MQL at once, to an SDR), a
manager who reads content (nurture), a student on the careers page (nowhere near sales), an
anonymous visitor who identifies later.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import random
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx
import yaml

from services.router.routing_config import RoutingConfig, Team

# What a real day looks like, at a pace a demo can show. The routing file's daily caps are sized
# for a real day: sdr-amer's two reps take 70 leads between 08:00 and 18:00 New York time,
# sdr-emea's three take 90. On a real day leads go round robin within their territory and an
# overflow to the inbound desk is the exception (a lead outside the team's hours, a rep at their
# cap late on a busy day). The demo sends a visitor a second (3,600 an hour, about half of them
# asking for sales): it spent sdr-amer's day in about five minutes, and every SDR decision after
# that was an overflow. At a real day's pace, though, it would show an SDR decision every few
# minutes. So the demo keeps its pace, and the local stack playing it routes with the same file,
# every daily cap multiplied for that pace (`demo_routing`, written to .devstack/routing.yaml):
# the reps fill up over the day as on a real one.
DEMO_JOURNEYS_PER_S = 1.0

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


def demo_routing(config: RoutingConfig, *, leads_per_hour: float) -> RoutingConfig:
    """`config` with every rep's daily cap multiplied by the same whole factor, the smallest
    with which each capped team could take `leads_per_hour` SDR leads for as long as it works in
    a day (its working hours, else 24 h). The worst case, so that no cap is reached in a day of
    demo: a journey makes at most one SDR lead, and every lead goes to the same team. Weights and
    the caps' proportions stay; a rep without a cap stays without; the version says it is a
    demo's."""
    factor = max(
        [1, *(math.ceil(leads_per_hour * _hours_a_day(team) / cap) for team, cap in _caps(config))]
    )
    teams = [
        team.model_copy(
            update={
                "reps": [
                    rep.model_copy(update={"daily_cap": rep.daily_cap * factor})
                    if rep.daily_cap is not None
                    else rep
                    for rep in team.reps
                ]
            }
        )
        for team in config.teams
    ]
    return config.model_copy(
        update={"version": f"{config.version}+demo-caps-x{factor}", "teams": teams}
    )


def routing_yaml(config: RoutingConfig) -> str:
    """A routing file that loads as `config` (`services.router.routing_config.load_routing`)."""
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    header = "# Written by the local stack (devstack/demo.py, demo_routing): do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def _caps(config: RoutingConfig) -> list[tuple[Team, int]]:
    """Each team whose active reps all have a daily cap, with the sum of their caps."""
    capped = []
    for team in config.teams:
        caps = [rep.daily_cap for rep in team.reps if rep.active]
        if caps and all(cap is not None for cap in caps):
            capped.append((team, sum(cap for cap in caps if cap is not None)))
    return capped


def _hours_a_day(team: Team) -> float:
    hours = team.working_hours
    if hours is None:
        return 24.0
    span = datetime.combine(date.min, hours.end) - datetime.combine(date.min, hours.start)
    return span.total_seconds() / 3600
