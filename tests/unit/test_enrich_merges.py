"""What an unmerge gives back (services/enrich/merges.py): the merged lead as it was, and the
survivor without what the merge gave it, keeping what its own calls changed since."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.enrich.merges import restore, snapshot, survivor_after_unmerge
from services.enrich.profile import folded_consent, folded_profile
from services.enrich.repository import LeadRecord
from shared.contracts import Consent, LeadProfile
from tests.unit.builders import NOW

pytestmark = pytest.mark.unit

SURVIVOR = LeadRecord(
    lead_id="lead-web",
    profile=LeadProfile(email="katherine@initech.com", first_name="Katherine"),
    identified=True,
    identified_at=NOW,
    version=3,
)
MERGED = LeadRecord(
    lead_id="lead-old",
    profile=LeadProfile(
        email="k.old@initech.com", first_name="Kathy", title="VP Sales", seniority="vp"
    ),
    identified=True,
    identified_at=NOW - timedelta(days=30),
    consent=Consent(email_opt_out=True, reasons=["event: Unsubscribed"]),
    version=5,
)


def merged_survivor(**changes: object) -> LeadRecord:
    """The survivor as the merge left it (`handler._merge`), then `changes` made since."""
    lead = SURVIVOR.copy()
    lead.profile = folded_profile(SURVIVOR.profile, MERGED.profile)
    lead.consent = folded_consent(SURVIVOR.consent, MERGED.consent)
    lead.version = 9
    for name, value in changes.items():
        setattr(lead, name, value)
    return lead


def test_the_survivor_gives_back_every_field_the_merge_filled_in() -> None:
    current = merged_survivor()
    assert current.profile.title == "VP Sales"  # what the merge gave it

    after = survivor_after_unmerge(current, before=SURVIVOR, merged=MERGED)

    assert after.profile == SURVIVOR.profile
    assert after.consent == SURVIVOR.consent  # the other person's opt-out is theirs
    assert (after.lead_id, after.version) == ("lead-web", 9)


def test_a_field_the_survivors_own_calls_changed_since_stays() -> None:
    current = merged_survivor(
        profile=folded_profile(SURVIVOR.profile, MERGED.profile).model_copy(
            update={"title": "Chief Revenue Officer"}
        )
    )

    after = survivor_after_unmerge(current, before=SURVIVOR, merged=MERGED)

    assert after.profile.title == "Chief Revenue Officer"
    assert after.profile.seniority is None  # filled by the merge, unchanged since: given back
    assert after.profile.first_name == "Katherine"


def test_an_opt_out_of_the_survivor_after_the_merge_stays() -> None:
    own_opt_out = Consent(email_opt_out=True, reasons=["event: Unsubscribed", "trait"])
    current = merged_survivor(consent=own_opt_out)

    after = survivor_after_unmerge(current, before=SURVIVOR, merged=MERGED)

    assert after.consent == own_opt_out


def test_a_snapshot_round_trips_the_survivor_it_keeps() -> None:
    assert restore(snapshot(SURVIVOR), lead_id="lead-web") == SURVIVOR
