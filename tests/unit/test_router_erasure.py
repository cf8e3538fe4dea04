"""The router's pure part of an erasure: which leads a batch locks, which of its messages are
dropped (and counted by kind) once their lead is erased, and what a batch's start skips."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from services.router.handler import _leads_named, _without_erased
from services.router.metrics import ERASED_LEAD_MESSAGES_DROPPED
from services.router.repository import Skipped
from shared.contracts import CrmFeedback, ErasureNotice, RouterCommand
from tests.unit.builders import lifecycle_change

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def feedback(lead_id: str | None, email: str | None = None) -> CrmFeedback:
    return CrmFeedback(feedback_id="f", lead_id=lead_id, email=email, outcome="won", at=AT)


def check(lead_id: str) -> RouterCommand:
    return RouterCommand(command_id="c", kind="sla_check", lead_id=lead_id, decision_id="d", at=AT)


def dropped(kind: str) -> float:
    value: float = ERASED_LEAD_MESSAGES_DROPPED.labels(kind=kind)._value.get()
    return value


def test_a_batch_locks_every_lead_it_names_by_id_and_every_lead_of_its_erasures() -> None:
    values: list[BaseModel] = [
        lifecycle_change(lead_id="lead-1"),
        feedback("lead-2"),
        feedback(None, email="someone@example.com"),  # by email alone: no lead id to lock
        check("lead-3"),
        ErasureNotice(request_id="r", lead_ids=["lead-4", "lead-5"], requested_at=AT, erased_at=AT),
    ]
    assert _leads_named(values) == {"lead-1", "lead-2", "lead-3", "lead-4", "lead-5"}


def test_messages_of_erased_leads_are_dropped_and_counted_by_kind() -> None:
    by_email = feedback(None, email="ada@example.com")
    values: list[BaseModel] = [
        lifecycle_change(lead_id="lead-ada"),
        lifecycle_change(lead_id="lead-bob"),
        feedback("lead-ada"),
        by_email,
        check("lead-ada"),
    ]
    before = {kind: dropped(kind) for kind in ("stage change", "crm feedback", "sla check")}

    kept = _without_erased(values, {"lead-ada"})

    assert kept == [values[1], by_email]
    assert {kind: dropped(kind) - n for kind, n in before.items()} == {
        "stage change": 1, "crm feedback": 1, "sla check": 1}  # fmt: skip
    assert _without_erased(values, set()) == values


def test_skipped_transitions_are_the_decided_ones_and_those_of_erased_leads() -> None:
    skipped = Skipped(["lead-1:mql:a"], erased=["lead-2:mql:b"])
    assert skipped == {"lead-1:mql:a", "lead-2:mql:b"}
    assert skipped.erased == {"lead-2:mql:b"}
    assert Skipped() == set()
    assert Skipped().erased == set()
