"""The topic registry: every topic's name, value model, key and dead-letter topic, in one place.

Names are contracts (docs/architecture.md, "Topics"); a deployment may put a prefix in front of
all of them (`LEADFLOW_KAFKA_TOPIC_PREFIX`), which is how tests keep their data apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from shared.contracts import (
    CrmFeedback,
    EnrichCommand,
    EnrichedEvent,
    ErasureNotice,
    ErasureReport,
    LeadScored,
    LifecycleChanged,
    RawEvent,
    RouterCommand,
    RoutingDecision,
    RoutingWithdrawal,
    ScoreCommand,
)

EXAMPLES_DIR = Path(__file__).parent / "contracts" / "examples"


@dataclass(frozen=True)
class Topic:
    """A topic contract. `name` is the unprefixed default; use `full_name(prefix)` on the wire."""

    name: str
    model: type[BaseModel]
    key: str
    producer: str
    compacted: bool = False
    """State, not a log: Kafka keeps each key's latest value (cleanup.policy=compact), and a
    record with no value (a tombstone) removes the key. Every other topic keeps by time."""

    def full_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.name}"

    def dlq_name(self, prefix: str = "") -> str:
        """The dead-letter topic: the original bytes of messages its consumers could not take."""
        return f"{prefix}{self.name}.dlq"

    @property
    def examples_file(self) -> Path:
        return EXAMPLES_DIR / f"{self.name}.json"


EVENTS_RAW = Topic(
    "events.raw",
    RawEvent,
    key="anonymousId, else userId, else (an imported lead) traits.email",
    producer="ingest",
)
EVENTS_ENRICHED = Topic("events.enriched", EnrichedEvent, key="lead_id", producer="enrich")
LEADS_SCORED = Topic("leads.scored", LeadScored, key="lead_id", producer="score")
LEADS_LIFECYCLE = Topic("leads.lifecycle", LifecycleChanged, key="lead_id", producer="score")
ROUTING_SDR = Topic("routing.sdr", RoutingDecision, key="lead_id", producer="router")
ROUTING_NURTURE = Topic("routing.nurture", RoutingDecision, key="lead_id", producer="router")
ROUTING_WITHDRAWALS = Topic(
    "routing.withdrawals", RoutingWithdrawal, key="lead_id", producer="router"
)
ROUTING_CURRENT = Topic(
    "routing.current",
    RoutingDecision,
    key="lead_id (a tombstone: the lead has no current route)",
    producer="router",
    compacted=True,
)
# CRMs write it over Kafka, or over HTTP through ingest (`POST /v1/crm/feedback`).
CRM_FEEDBACK = Topic("crm.feedback", CrmFeedback, key="lead_id or email", producer="CRMs, ingest")
ENRICH_COMMANDS = Topic(
    "enrich.commands", EnrichCommand, key="domain or merge_id", producer="enrich (internal)"
)
SCORE_COMMANDS = Topic("score.commands", ScoreCommand, key="lead_id", producer="score (internal)")
ROUTER_COMMANDS = Topic(
    "router.commands", RouterCommand, key="lead_id", producer="router (internal)"
)

PRIVACY_ERASURES = Topic("privacy.erasures", ErasureNotice, key="request_id", producer="enrich")
PRIVACY_REPORTS = Topic(
    "privacy.reports", ErasureReport, key="request_id", producer="score, router, console, sync"
)

ALL_TOPICS: tuple[Topic, ...] = (
    EVENTS_RAW,
    EVENTS_ENRICHED,
    LEADS_SCORED,
    LEADS_LIFECYCLE,
    ROUTING_SDR,
    ROUTING_NURTURE,
    ROUTING_WITHDRAWALS,
    ROUTING_CURRENT,
    CRM_FEEDBACK,
    ENRICH_COMMANDS,
    SCORE_COMMANDS,
    ROUTER_COMMANDS,
    PRIVACY_ERASURES,
    PRIVACY_REPORTS,
)


def all_topic_names(prefix: str = "") -> list[str]:
    """Every topic and its dead-letter topic, prefixed: what a deployment must create."""
    names: list[str] = []
    for topic in ALL_TOPICS:
        names += [topic.full_name(prefix), topic.dlq_name(prefix)]
    return names
