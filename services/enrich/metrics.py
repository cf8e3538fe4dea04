"""enrich's own metrics."""

from functools import cache

from prometheus_client import Counter

IDENTITY_REFUSALS = Counter(
    "leadflow_enrich_identity_refusals_total",
    "Identities of a call not linked to its lead because a guardrail refused (the lead's history"
    " on events.enriched says which and why)",
    ["kind", "reason"],
)


@cache
def refusals_of(kind: str, reason: str) -> Counter:
    """`IDENTITY_REFUSALS` for one label set (kinds times reasons: a handful)."""
    return IDENTITY_REFUSALS.labels(kind=kind, reason=reason)


DO_NOT_TRACK_DROPPED = Counter(
    "leadflow_enrich_do_not_track_dropped_total",
    "Calls dropped, not stored, because one of their identifiers belongs to an erased person"
    " (the do-not-track list)",
)
ERASURES = Counter(
    "leadflow_enrich_erasures_total",
    "Erasure requests carried out by enrich, by whether the identity graph knew the person",
    ["found"],
)
