"""Who must not be contacted, and why. Pure: no I/O.

Checked before any routing, in this order (the first reason found is recorded):
disqualified, opted out of email, on the suppression list, competitor domain, blocked domain,
existing customer (unless the expansion rule takes the lead; see `is_expansion`).
"""

from __future__ import annotations

from services.router.routing_config import RoutingConfig
from services.router.segments import LeadFacts, matches
from shared.contracts import LifecycleChanged, Stage


def suppression_reason(
    change: LifecycleChanged, *, lead: LeadFacts, config: RoutingConfig
) -> str | None:
    """Why this lead must not be routed, or None when it may be."""
    if change.to_stage == Stage.DISQUALIFIED:
        return f"disqualified: {change.reason}"
    consent = change.consent
    if consent.email_opt_out:
        return _with_details("opted out", consent.reasons)
    if consent.suppressed:
        return _with_details("on the suppression list", consent.reasons)
    suppression = config.suppression
    for domain in lead_domains(change):
        if _listed(domain, suppression.competitor_domains):
            return f"competitor domain {domain}"
        if _listed(domain, suppression.blocked_domains):
            return f"blocked domain {domain}"
    account = change.account
    if account is not None and account.type == "customer" and not is_expansion(lead, config):
        return f"existing customer: account {account.name} ({account.account_id})"
    if change.to_stage == Stage.CUSTOMER:
        return "existing customer: the lead became a customer"
    return None


def is_expansion(lead: LeadFacts, config: RoutingConfig) -> bool:
    """A customer's lead that the expansion rule routes (to its owner or the expansion team)."""
    expansion = config.suppression.expansion
    return (
        expansion is not None
        and lead.stage in config.triggers.sdr
        and matches(expansion.when, lead)
    )


def lead_domains(change: LifecycleChanged) -> list[str]:
    """The lead's email domain, company domain and firmographics domain, without repeats."""
    email = change.profile.email
    found = [
        email.rsplit("@", 1)[1].lower() if email and "@" in email else None,
        change.profile.company_domain,
        change.firmographics.domain if change.firmographics else None,
    ]
    return list(dict.fromkeys(d.lower() for d in found if d))


def _listed(domain: str, listed: list[str]) -> bool:
    # A listed domain covers its subdomains: "rival.com" also stops "eu.rival.com".
    return any(domain == entry or domain.endswith("." + entry) for entry in listed)


def _with_details(what: str, details: list[str]) -> str:
    return f"{what}: {'; '.join(details)}" if details else what
