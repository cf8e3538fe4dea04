"""Builders of test data: one factory per value, keyword arguments over sensible defaults.

Each returns a valid value as its service would see it; a test names only what it is about.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.router.routing_config import RoutingConfig
from shared.contracts import (
    AccountMatch,
    Consent,
    Contribution,
    EnrichedEvent,
    Firmographics,
    LeadProfile,
    LifecycleChanged,
    RawEvent,
    Score,
    Stage,
)

NOW = datetime(2026, 3, 2, 9, 15, 41, tzinfo=UTC)
"""A fixed 'now' for every test: domain code never reads the clock."""


def raw_event(**fields: Any) -> RawEvent:
    """A track call from an anonymous browser visitor, as ingest stamped it."""
    defaults: dict[str, Any] = {
        "type": "track",
        "message_id": "msg-1",
        "source": "website",
        "received_at": NOW,
        "timestamp": NOW,
        "anonymous_id": "anon-1",
        "event": "Page Viewed",
    }
    if fields.get("type", "track") != "track":
        defaults["event"] = None
    return RawEvent(**{**defaults, **fields})


def identify(**fields: Any) -> RawEvent:
    """An identify call: `raw_event(type="identify", ...)`."""
    return raw_event(**{"type": "identify", **fields})


def profile(**fields: Any) -> LeadProfile:
    """A VP with a work email at a mid-size company (override to make someone else)."""
    defaults: dict[str, Any] = {
        "email": "maria.gonzalez@northwind-logistics.com",
        "first_name": "María",
        "last_name": "González",
        "title": "VP of Sales Operations",
        "company": "Northwind Logistics",
        "company_domain": "northwind-logistics.com",
    }
    return LeadProfile(**{**defaults, **fields})


def enriched_event(**fields: Any) -> EnrichedEvent:
    """An anonymous page view attributed to lead `lead-1`, empty profile, no consent withdrawn."""
    defaults: dict[str, Any] = {
        "message_id": "msg-1",
        "lead_id": "lead-1",
        "type": "page",
        "source": "website",
        "timestamp": NOW,
        "received_at": NOW,
        "identified": False,
    }
    return EnrichedEvent(**{**defaults, **fields})


def track(event: str, **fields: Any) -> EnrichedEvent:
    """An enriched track call named `event`."""
    return enriched_event(**{"type": "track", "event": event, **fields})


def page_view(path: str, **fields: Any) -> EnrichedEvent:
    """An enriched page call at `path`."""
    return enriched_event(**{"type": "page", "properties": {"path": path}, **fields})


def score(**fields: Any) -> Score:
    defaults: dict[str, Any] = {"fit": 35, "behaviour": 75, "total": 110, "grade": "A"}
    return Score(**{**defaults, **fields})


def firmographics(**fields: Any) -> Firmographics:
    """A 501-1000 employee logistics company in France."""
    defaults: dict[str, Any] = {
        "domain": "northwind-logistics.com",
        "company_name": "Northwind Logistics",
        "size_band": "501-1000",
        "industry": "Logistics",
        "country": "FR",
    }
    return Firmographics(**{**defaults, **fields})


def account_match(**fields: Any) -> AccountMatch:
    """A strong (email domain) match to target account acc-1, owned by rep-grace."""
    defaults: dict[str, Any] = {
        "account_id": "acc-1",
        "name": "Northwind Logistics",
        "type": "target",
        "owner_id": "rep-grace",
        "owner_email": "grace@example.com",
        "confidence": "strong",
        "method": "email_domain",
        "score": 100.0,
        "evidence": "email domain",
    }
    return AccountMatch(**{**defaults, **fields})


def lifecycle_change(**fields: Any) -> LifecycleChanged:
    """A lead becoming an MQL after asking for a demo, consent intact."""
    defaults: dict[str, Any] = {
        "transition_id": "lead-1:mql:msg-1",
        "lead_id": "lead-1",
        "from_stage": Stage.LEAD,
        "to_stage": Stage.MQL,
        "reason": "total score 110 >= MQL threshold 60",
        "at": NOW,
        "received_at": NOW,
        "profile": profile(),
        "consent": Consent(),
        "score": score(),
        "top_contributions": [
            Contribution(rule_id="demo-request", points=60, reason="asked for a demo")
        ],
    }
    return LifecycleChanged(**{**defaults, **fields})


def routing_config(**fields: Any) -> RoutingConfig:
    """Regions EMEA/AMER; `sdr-emea` (Ada weight 2, Grace, Alan; Paris office hours Mon-Fri
    08:00-18:00; overflow to `sdr-inbound`), `sdr-amer` (Katherine, New York hours),
    `sdr-inbound` (Linus, always on) with a manager, `account-management`; a territory per
    region; nurture tracks; SLA 5 min for A1, 1 h for A, 4 h else; NOW is a Monday at 10:15
    in Paris (04:15 in New York)."""
    office = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}
    defaults: dict[str, Any] = {
        "version": "test-1",
        "regions": {"EMEA": ["FR", "DE", "GB"], "AMER": ["US", "CA"]},
        "teams": [
            {
                "name": "sdr-emea",
                "timezone": "Europe/Paris",
                "working_hours": office,
                "overflow": "sdr-inbound",
                "reps": [
                    {
                        "id": "rep-ada",
                        "name": "Ada Lovelace",
                        "email": "ada@example.com",
                        "weight": 2,
                    },
                    {"id": "rep-grace", "name": "Grace Hopper", "email": "grace@example.com"},
                    {"id": "rep-alan", "name": "Alan Turing", "email": "alan@example.com"},
                ],
            },
            {
                "name": "sdr-amer",
                "timezone": "America/New_York",
                "working_hours": office,
                "overflow": "sdr-inbound",
                "reps": [{"id": "rep-kat", "name": "Katherine Johnson", "email": "kj@example.com"}],
            },
            {
                "name": "sdr-inbound",
                "manager": {"id": "mgr-emmy", "name": "Emmy Noether", "email": "emmy@example.com"},
                "reps": [{"id": "rep-linus", "name": "Linus Pauling", "email": "lp@example.com"}],
            },
            {
                "name": "account-management",
                "reps": [{"id": "am-barbara", "name": "Barbara Liskov", "email": "bl@example.com"}],
            },
        ],
        "territories": [
            {"name": "emea", "team": "sdr-emea", "when": {"regions": ["EMEA"]}},
            {"name": "amer", "team": "sdr-amer", "when": {"regions": ["AMER"]}},
        ],
        "default_team": "sdr-inbound",
        "fallback_queue": "sdr-unassigned",
        "suppression": {
            "competitor_domains": ["rival.com"],
            "blocked_domains": ["blocked.example"],
            "expansion": {
                "when": {"grades": ["A"], "seniorities": ["vp", "c-level"]},
                "team": "account-management",
            },
        },
        "nurture": {
            "tracks": [
                {"track": "recycled-reengagement", "when": {"stages": ["recycled"]}},
                {"track": "executive-briefings", "when": {"seniorities": ["vp", "c-level"]}},
                {"track": "high-fit-nurture", "when": {"grades": ["A", "B"]}},
            ],
            "default": "general-nurture",
        },
        "sla": {"by_priority": {"A1": "5m"}, "by_grade": {"A": "1h"}, "default": "4h"},
    }
    return RoutingConfig.model_validate({**defaults, **fields})
