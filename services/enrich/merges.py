"""What a merge keeps so that an unmerge can reverse it. Pure: no I/O, no clock.

A merge records both leads' pictures as they were just before it (`snapshot`). An unmerge
restores the merged lead from its own (`restore`), and takes back from the survivor what the
merge gave it, field by field (`survivor_after_unmerge`): a value the merge filled in and that
nothing changed since goes back to the survivor's own; a value the survivor's later calls set
stays. Identities the merge moved go back in the repository, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.enrich.profile import folded_consent, folded_profile
from services.enrich.repository import LeadRecord
from shared.contracts import AccountMatch, Consent, Firmographics, LeadProfile


def snapshot(lead: LeadRecord) -> dict[str, object]:
    """A lead's picture as JSON, kept with a merge so an unmerge can restore it."""
    return {
        "profile": lead.profile.model_dump(mode="json"),
        "identified": lead.identified,
        "identified_at": lead.identified_at.isoformat() if lead.identified_at else None,
        "consent": lead.consent.model_dump(mode="json"),
        "firmographics": lead.firmographics.model_dump(mode="json") if lead.firmographics else None,
        "firmographics_domain": lead.firmographics_domain,
        "account": lead.account.model_dump(mode="json") if lead.account else None,
        "version": lead.version,
    }


def restore(saved: dict[str, Any], *, lead_id: str) -> LeadRecord:
    """The lead a `snapshot` was taken of, under `lead_id`."""
    identified_at = saved.get("identified_at")
    return LeadRecord(
        lead_id=lead_id,
        profile=LeadProfile.model_validate(saved["profile"]),
        identified=bool(saved["identified"]),
        identified_at=datetime.fromisoformat(identified_at)
        if isinstance(identified_at, str)
        else None,
        consent=Consent.model_validate(saved["consent"]),
        firmographics=Firmographics.model_validate(saved["firmographics"])
        if saved.get("firmographics")
        else None,
        firmographics_domain=saved.get("firmographics_domain"),
        account=AccountMatch.model_validate(saved["account"]) if saved.get("account") else None,
        version=int(saved.get("version") or 0),
    )


def survivor_after_unmerge(
    current: LeadRecord, *, before: LeadRecord, merged: LeadRecord
) -> LeadRecord:
    """The survivor without what a merge of `merged` into `before` gave it (see the module doc).

    Profile fields one by one; consent, the identification and the company facts (firmographics
    and account, which follow the profile's company) each as a whole. Returns a new record with
    `current`'s id, version and bookkeeping."""
    folded = folded_profile(before.profile, merged.profile).model_dump()
    own, now = before.profile.model_dump(), current.profile.model_dump()
    profile = LeadProfile.model_validate(
        {
            name: own[name] if folded[name] != own[name] and now[name] == folded[name] else value
            for name, value in now.items()
        }
    )
    restored = current.copy()
    restored.profile = profile
    if current.consent == folded_consent(before.consent, merged.consent):
        restored.consent = before.consent
    if not before.identified and current.identified_at == merged.identified_at:
        restored.identified, restored.identified_at = before.identified, before.identified_at
    if profile == before.profile:
        restored.firmographics = before.firmographics
        restored.firmographics_domain = before.firmographics_domain
        restored.firmographics_pending = False
        restored.account = before.account
    return restored
