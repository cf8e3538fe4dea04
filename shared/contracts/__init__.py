"""One pydantic model per topic value. The topic registry is `shared.topics`."""

from shared.contracts.crm_feedback import CrmFeedback
from shared.contracts.enrich_commands import EnrichCommand
from shared.contracts.events_enriched import (
    AccountMatch,
    AttributedFrom,
    Consent,
    EnrichedEvent,
    Firmographics,
    IdentityRefusal,
    LeadProfile,
    MergeInfo,
)
from shared.contracts.events_raw import RawEvent, corrected_timestamp
from shared.contracts.leads import (
    FORWARD_ORDER,
    Contribution,
    Factor,
    FirstTouch,
    LeadScored,
    LifecycleChanged,
    Likelihood,
    Score,
    Stage,
)
from shared.contracts.privacy import ErasureNotice, ErasureReport
from shared.contracts.router_commands import RouterCommand
from shared.contracts.routing import Owner, RoutingDecision, RoutingWithdrawal
from shared.contracts.score_commands import ScoreCommand

__all__ = [
    "FORWARD_ORDER",
    "AccountMatch",
    "AttributedFrom",
    "Consent",
    "Contribution",
    "CrmFeedback",
    "EnrichCommand",
    "EnrichedEvent",
    "ErasureNotice",
    "ErasureReport",
    "Factor",
    "Firmographics",
    "FirstTouch",
    "IdentityRefusal",
    "LeadProfile",
    "LeadScored",
    "LifecycleChanged",
    "Likelihood",
    "MergeInfo",
    "Owner",
    "RawEvent",
    "RouterCommand",
    "RoutingDecision",
    "RoutingWithdrawal",
    "Score",
    "ScoreCommand",
    "Stage",
    "corrected_timestamp",
]
