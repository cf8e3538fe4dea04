"""The messages enrich builds for `events.enriched` and the lead snapshot a merge keeps
(services/enrich/handler.py, pure parts)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from services.enrich.handler import enriched_event, kept_form, lead_message, reattributed
from services.enrich.merges import restore, snapshot
from services.enrich.repository import LeadRecord
from shared.contracts import AccountMatch, AttributedFrom, Consent, Firmographics, MergeInfo
from tests.unit.builders import NOW, profile, raw_event

pytestmark = pytest.mark.unit


def known_lead() -> LeadRecord:
    return LeadRecord(
        lead_id="lead-maria",
        profile=profile(seniority="vp", job_function="sales"),
        identified=True,
        identified_at=NOW,
        consent=Consent(email_opt_out=True, reasons=["event: Unsubscribed"]),
        firmographics=Firmographics(
            domain="northwind-logistics.com",
            employee_count=640,
            size_band="501-1000",
            sources={"employee_count": "file"},
        ),
        firmographics_domain="northwind-logistics.com",
        account=AccountMatch(
            account_id="acct-1",
            name="Northwind",
            type="target",
            confidence="strong",
            method="email_domain",
            score=100,
            evidence="email domain northwind-logistics.com",
        ),
        version=7,
    )


def test_an_event_carries_the_whole_picture_of_its_lead() -> None:
    event = enriched_event(raw_event(event="Demo Requested", message_id="m-9"), known_lead())

    assert (event.kind, event.type, event.message_id) == ("event", "track", "m-9")
    assert (event.lead_id, event.lead_version, event.stage) == ("lead-maria", 7, "known")
    assert event.account_id == "acct-1"
    assert event.firmographics is not None
    assert event.firmographics.size_band == "501-1000"
    assert event.consent.email_opt_out is True
    assert event.attributed_from is None


def test_anonymous_history_is_re_emitted_under_the_known_lead_with_its_original_id() -> None:
    anonymous = LeadRecord(lead_id="lead-anon")
    call = raw_event(
        type="page", name="Pricing", message_id="m-1", timestamp=NOW - timedelta(days=1)
    )
    original = enriched_event(call, anonymous)

    again = reattributed(
        kept_form(call, lead_id=original.lead_id), known_lead(), from_lead="lead-anon"
    )

    assert (again.message_id, again.name, again.timestamp) == ("m-1", "Pricing", original.timestamp)
    assert (again.lead_id, again.identified, again.stage) == ("lead-maria", True, "known")
    assert again.attributed_from is not None
    assert (again.attributed_from.lead_id, again.attributed_from.anonymous_id) == (
        "lead-anon",
        "anon-1",
    )


def test_a_merged_message_has_no_call_type_and_names_the_merge() -> None:
    info = MergeInfo(merge_id="mg-1", surviving_lead_id="lead-maria", merged_lead_ids=["lead-b"],
                     reason="same person (shared identity)")  # fmt: skip

    message = lead_message(known_lead(), kind="merged", message_id="merged:mg-1", at=NOW,
                           received_at=NOW, merge=info)  # fmt: skip

    assert (message.kind, message.type, message.source) == ("merged", None, "enrich")
    assert message.merge == info


def test_a_snapshot_restores_the_lead_as_it_was() -> None:
    lead = known_lead()

    restored = restore(snapshot(lead), lead_id=lead.lead_id)

    assert restored == lead


def test_a_kept_anonymous_event_survives_storage_and_comes_back_as_it_was_emitted() -> None:
    anonymous = LeadRecord(lead_id="lead-anon")
    call = raw_event(
        type="page",
        name="Pricing",
        message_id="m-1",
        properties={"path": "/pricing", "referrer": {"host": "news.example"}},
        timestamp=NOW - timedelta(days=1),
    )
    original = enriched_event(call, anonymous)
    stored = orjson.loads(orjson.dumps(kept_form(call, lead_id=original.lead_id)))

    again = reattributed(stored, known_lead(), from_lead="lead-anon")

    picture = enriched_event(call, known_lead())
    assert again == picture.model_copy(
        update={"attributed_from": AttributedFrom(lead_id="lead-anon", anonymous_id="anon-1")}
    )


def test_history_kept_whole_by_earlier_versions_is_re_attributed_the_same_way() -> None:
    call = raw_event(type="page", name="Pricing", message_id="m-1")
    emitted = enriched_event(call, LeadRecord(lead_id="lead-anon"))
    origin = AttributedFrom(lead_id="lead-anon", anonymous_id="anon-1")
    old_form = emitted.model_copy(update={"attributed_from": origin}).model_dump(mode="json")

    assert reattributed(old_form, known_lead(), from_lead="lead-anon") == reattributed(
        kept_form(call, lead_id="lead-anon"), known_lead(), from_lead="lead-anon"
    )
