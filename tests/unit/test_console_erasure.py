"""The console's pure part of an erasure: which lead a message names (a CRM report by email alone
names none: it cannot be checked against the erased leads, and finds no record of them), how a
dropped message is counted, and what a report says per table."""

from __future__ import annotations

from datetime import UTC, datetime

from services.console.handler import _kind, _lead_named
from services.console.repository import Erased
from shared.contracts import CrmFeedback, LeadScored, Score
from tests.unit.builders import lifecycle_change

AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_a_message_names_its_lead_by_id_and_a_report_by_email_names_none() -> None:
    change = lifecycle_change(lead_id="lead-1")
    scored = LeadScored(lead_id="lead-2", message_id="m", score=Score(fit=1, behaviour=1, total=2,
                        grade="D"), contributions=[], rule_version="t", scored_at=AT,
                        received_at=AT)  # fmt: skip
    by_id = CrmFeedback(feedback_id="f", lead_id="lead-3", outcome="won", at=AT)
    by_email = CrmFeedback(feedback_id="g", email="someone@example.com", outcome="won", at=AT)

    assert [_lead_named(v) for v in (change, scored, by_id, by_email)] == [
        "lead-1", "lead-2", "lead-3", None]  # fmt: skip
    assert [_kind(v) for v in (change, scored, by_id)] == ["stage change", "score", "crm report"]


def test_a_report_lists_the_records_deleted_and_the_rows_anonymised() -> None:
    erased = Erased(leads=2, stage_changes=4, decisions=3, feedback=1, audit=0)
    assert erased.deleted() == {"leads": 2}
    assert erased.anonymised() == {"stage_changes": 4, "decisions": 3, "feedback": 1, "audit": 0}
