"""Realistic website traffic for the end-to-end benchmark, as Segment `/v1/batch` bodies.

Many anonymous visitors page around; some identify themselves (an engineer on free mail, a
manager reading content: known leads that stay below MQL); a share are buyers (a VP of Sales at
Initech, a target-industry, mid-size company, who looks at pricing, identifies and asks for a
demo: an MQL at once under the default scoring rules, so an SDR decision). Visitors' calls are
interleaved the way concurrent sessions reach a site. Deterministic for a seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

ACTIVE_VISITORS = 300
BUYER_SHARE = 0.08
KNOWN_SHARE = 0.20
PAGES = ["/", "/product", "/blog/lead-scoring", "/customers", "/docs", "/integrations", "/about"]


@dataclass
class Visitor:
    calls: list[dict[str, Any]]
    next: int = 0


@dataclass
class TrafficMix:
    """Counts of what a generator produced (to check the benchmark drove what it claims)."""

    events: int = 0
    buyers: int = 0
    known: int = 0
    buyer_emails: list[str] = field(default_factory=list)


def _page(anonymous_id: str, path: str) -> dict[str, Any]:
    return {
        "type": "page",
        "anonymousId": anonymous_id,
        "name": path,
        "properties": {"path": path, "url": f"https://lumenboard.io{path}"},
        "messageId": str(uuid.uuid4()),
    }


def _track(anonymous_id: str, event: str, **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": anonymous_id,
        "event": event,
        "properties": properties,
        "messageId": str(uuid.uuid4()),
    }


def _identify(anonymous_id: str, email: str, title: str, company: str) -> dict[str, Any]:
    return {
        "type": "identify",
        "anonymousId": anonymous_id,
        "userId": f"u-{email}",
        "traits": {"email": email, "title": title, "company": company},
        "messageId": str(uuid.uuid4()),
    }


def _visitor(rng: random.Random, run: str, n: int, mix: TrafficMix) -> Visitor:
    anonymous_id = f"anon-{run}-{n}"
    roll = rng.random()
    if roll < BUYER_SHARE:
        email = f"buyer.{run}.{n}@initech.com"
        mix.buyers += 1
        mix.buyer_emails.append(email)
        calls = [
            _page(anonymous_id, "/"),
            _page(anonymous_id, "/pricing"),
            _identify(anonymous_id, email, "VP Sales", "Initech"),
            _track(anonymous_id, "Demo Requested", form="demo"),
        ]
    elif roll < BUYER_SHARE + KNOWN_SHARE:
        mix.known += 1
        email = f"reader.{run}.{n}@gmail.com"
        calls = [_page(anonymous_id, rng.choice(PAGES)) for _ in range(rng.randint(1, 3))]
        calls += [
            _identify(anonymous_id, email, "Software Engineer", ""),
            _track(anonymous_id, "Content Downloaded", asset="lead-scoring-guide"),
        ]
    else:
        calls = [_page(anonymous_id, rng.choice(PAGES)) for _ in range(rng.randint(2, 7))]
    return Visitor(calls)


def calls(seed: int, mix: TrafficMix) -> Iterator[dict[str, Any]]:
    """An endless, interleaved stream of Segment calls; each visitor's calls stay in order."""
    rng = random.Random(seed)
    run = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    started = 0
    active = []
    for _ in range(ACTIVE_VISITORS):
        active.append(_visitor(rng, run, started, mix))
        started += 1
    while True:
        index = rng.randrange(len(active))
        visitor = active[index]
        yield visitor.calls[visitor.next]
        mix.events += 1
        visitor.next += 1
        if visitor.next == len(visitor.calls):
            active[index] = _visitor(rng, run, started, mix)
            started += 1


def batch_bodies(*, seed: int, batch_size: int, mix: TrafficMix | None = None) -> Iterator[bytes]:
    """Endless serialised `/v1/batch` bodies of `batch_size` calls (orjson: a few microseconds
    per call, so the load generator spends its time sending)."""
    stream = calls(seed, mix if mix is not None else TrafficMix())
    while True:
        yield orjson.dumps({"batch": [next(stream) for _ in range(batch_size)]})
