"""The handler's cache of the leads it wrote (services/enrich/repository.py, LeadCache): a lead
is handed out only under the row version (xmin) it was written as, as a copy, and the oldest
entries make room for new ones."""

from __future__ import annotations

import pytest

from services.enrich.identity import Identity, IdentityKind
from services.enrich.repository import LeadCache, LeadRecord
from tests.unit.builders import profile

pytestmark = pytest.mark.unit

ADA = Identity(IdentityKind.EMAIL, "ada@initech.com")
LAPTOP = Identity(IdentityKind.ANONYMOUS_ID, "laptop")


def test_a_lead_is_handed_out_only_under_the_xmin_it_was_written_as() -> None:
    cache = LeadCache()
    cache.put(LeadRecord(lead_id="l1", profile=profile(), version=3), "1001")

    assert cache.get("l1", "1002") is None  # written since by another transaction
    assert cache.get("l2", "1001") is None
    held = cache.get("l1", "1001")
    assert held is not None
    assert (held.lead_id, held.version, held.profile) == ("l1", 3, profile())


def test_handed_out_leads_are_copies_the_handler_may_change() -> None:
    cache = LeadCache()
    written = LeadRecord(lead_id="l1", version=3)
    cache.put(written, "1001")
    written.version = 99  # the handler goes on changing its record after the save

    first = cache.get("l1", "1001")
    assert first is not None
    first.version, first.identified = 4, True
    again = cache.get("l1", "1001")
    assert again is not None
    assert (again.version, again.identified) == (3, False)


def test_identities_name_the_held_leads_they_last_pointed_at() -> None:
    cache = LeadCache()
    cache.put(LeadRecord(lead_id="l1"), "1001")
    cache.link([(ADA, "l1"), (LAPTOP, "l2")])  # l2 is not held

    assert cache.held([ADA, LAPTOP, Identity(IdentityKind.USER_ID, "u")]) == {"l1": "1001"}
    cache.forget(["l1"])
    assert cache.held([ADA]) == {}


def test_the_oldest_entries_make_room() -> None:
    cache = LeadCache(leads=2, identities=2)
    for n in range(3):
        cache.put(LeadRecord(lead_id=f"l{n}"), str(n))
    cache.get("l1", "1")  # used recently: kept
    cache.put(LeadRecord(lead_id="l3"), "3")
    cache.link([(ADA, "l1"), (LAPTOP, "l3"), (Identity(IdentityKind.USER_ID, "u"), "l3")])

    assert [n for n in range(4) if cache.get(f"l{n}", str(n)) is not None] == [1, 3]
    assert cache.held([ADA, LAPTOP]) == {"l3": "3"}  # ADA's link was the oldest
