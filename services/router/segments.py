"""What routing knows about a lead, and segment matching (territories, nurture tracks,
expansion). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from services.router.routing_config import RoutingConfig, Segment
from shared.contracts import LifecycleChanged, Stage


@dataclass(frozen=True)
class LeadFacts:
    """The facts segments test, lower-cased where the config compares case-insensitively."""

    stage: Stage
    country: str | None
    region: str | None
    industry: str | None
    size_band: str | None
    seniority: str | None
    job_function: str | None
    grade: str
    band: int | None
    priority: str | None
    likelihood: float | None = None  # the published model's, when there is one


def lead_facts(change: LifecycleChanged, config: RoutingConfig) -> LeadFacts:
    """The lead's country is its own (profile) when known, else its company's."""
    firmographics = change.firmographics
    country = change.profile.country or (firmographics.country if firmographics else None)
    country = country.upper() if country else None
    region = next(
        (name for name, codes in config.regions.items() if country and country in codes), None
    )
    return LeadFacts(
        stage=change.to_stage,
        country=country,
        region=region,
        industry=_lower(firmographics.industry if firmographics else None),
        size_band=_lower(firmographics.size_band if firmographics else None),
        seniority=_lower(change.profile.seniority),
        job_function=_lower(change.profile.job_function),
        grade=change.score.grade,
        band=change.score.band,
        priority=change.score.priority,
        likelihood=change.likelihood.probability if change.likelihood is not None else None,
    )


def matches(segment: Segment, lead: LeadFacts) -> bool:
    """Every condition the segment gives holds for the lead."""
    tests: list[tuple[list[str] | None, str | None]] = [
        (segment.regions, lead.region),
        (segment.countries, lead.country),
        (segment.industries, lead.industry),
        (segment.size_bands, lead.size_band),
        (segment.seniorities, lead.seniority),
        (segment.job_functions, lead.job_function),
        (segment.grades, lead.grade),
        (segment.priorities, lead.priority),
    ]
    for allowed, value in tests:
        if allowed is not None and (value is None or value.lower() not in _lowered(allowed)):
            return False
    if segment.stages is not None and lead.stage not in segment.stages:
        return False
    if segment.min_likelihood is not None and (
        lead.likelihood is None or lead.likelihood < segment.min_likelihood
    ):
        return False
    return segment.bands is None or (lead.band is not None and lead.band in segment.bands)


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _lowered(values: list[str]) -> set[str]:
    return {v.lower() for v in values}
