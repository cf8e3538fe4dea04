"""One current route per lead: withdrawals and per-lead sequences (services.router.current_routes)."""

from __future__ import annotations

import json
from typing import Any

from services.router.current_routes import (
    CurrentChange,
    CurrentRoute,
    Ended,
    Sent,
    sequenced,
    withdrawal_id,
)
from shared.contracts import RoutingDecision, RoutingWithdrawal
from shared.topics import ROUTING_NURTURE, ROUTING_SDR
from tests.unit.builders import NOW

SDR = json.loads(ROUTING_SDR.examples_file.read_text())[0]
NURTURE = json.loads(ROUTING_NURTURE.examples_file.read_text())[0]


def decision(example: dict[str, Any], decision_id: str, **fields: Any) -> RoutingDecision:
    return RoutingDecision.model_validate(
        example | {"lead_id": "lead-1", "decision_id": decision_id, "sequence": None} | fields
    )


def kinds(messages: list[Any]) -> list[tuple[str, Any, Any]]:
    """Each message as (kind, its decision id, its sequence or current decision id)."""
    out: list[tuple[str, Any, Any]] = []
    for m in messages:
        if isinstance(m, RoutingWithdrawal):
            out.append(("withdrawal", m.decision_id, m.sequence))
        elif isinstance(m, RoutingDecision):
            out.append((m.route, m.decision_id, m.sequence))
        else:
            assert isinstance(m, CurrentChange)
            out.append(("current", m.lead_id, m.decision.decision_id if m.decision else None))
    return out


def test_a_nurture_lead_that_becomes_an_mql_is_withdrawn_before_its_sdr_decision() -> None:
    stored = {"lead-1": CurrentRoute("lead-1", sequence=1, decision_id="n1", route="nurture")}
    sdr = decision(SDR, "s1", stage="mql")

    done = sequenced([Sent(sdr)], stored, at=NOW)

    assert kinds(done.messages) == [
        ("withdrawal", "n1", 2),
        ("sdr", "s1", 3),
        ("current", "lead-1", "s1"),
    ]
    withdrawal = done.withdrawals[0]
    assert (withdrawal.cause, withdrawal.replaced_by, withdrawal.route) == (
        "replaced",
        "s1",
        "nurture",
    )
    assert withdrawal.withdrawal_id == withdrawal_id("n1")
    assert "the lead became mql and went to sales" in withdrawal.reason
    assert done.routes == {"lead-1": CurrentRoute("lead-1", 3, "s1", "sdr")}


def test_a_first_decision_starts_the_sequence_and_withdraws_nothing() -> None:
    done = sequenced([Sent(decision(SDR, "s1"))], {}, at=NOW)

    assert kinds(done.messages) == [("sdr", "s1", 1), ("current", "lead-1", "s1")]
    assert done.routes["lead-1"].sequence == 1


def test_an_sla_reassignment_withdraws_the_breached_decision_as_breached() -> None:
    stored = {"lead-1": CurrentRoute("lead-1", sequence=4, decision_id="s1", route="sdr")}
    again = decision(SDR, "s2", supersedes="s1", strategy="sla_reassigned",
                     reasons=["SLA breached: rep-a did not accept within 5 min"])  # fmt: skip

    done = sequenced([Sent(again)], stored, at=NOW)

    withdrawal = done.withdrawals[0]
    assert (withdrawal.cause, withdrawal.replaced_by, withdrawal.sequence) == (
        "sla_breached",
        "s2",
        5,
    )
    assert withdrawal.reason == "SLA breached: rep-a did not accept within 5 min"
    assert done.decisions[0].sequence == 6


def test_sales_moving_the_lead_on_keeps_its_sdr_owner_but_ends_a_nurture_enrolment() -> None:
    sdr_lead = {"lead-1": CurrentRoute("lead-1", sequence=2, decision_id="s1", route="sdr")}
    moved = Ended("lead-1", reason="the lead moved to sql", not_routed=False)

    assert sequenced([moved], sdr_lead, at=NOW).messages == []
    assert sequenced([moved], sdr_lead, at=NOW).routes == {}  # nothing to write

    nurtured = {"lead-1": CurrentRoute("lead-1", sequence=2, decision_id="n1", route="nurture")}
    done = sequenced([moved], nurtured, at=NOW)
    assert kinds(done.messages) == [("withdrawal", "n1", 3), ("current", "lead-1", None)]
    assert done.withdrawals[0].cause == "stage_changed"
    assert done.routes == {"lead-1": CurrentRoute("lead-1", 3, None, None)}


def test_a_lead_no_longer_routed_loses_its_sdr_route_with_a_tombstone() -> None:
    stored = {"lead-1": CurrentRoute("lead-1", sequence=1, decision_id="s1", route="sdr")}

    done = sequenced([Ended("lead-1", reason="unsubscribed", not_routed=True)], stored, at=NOW)

    assert kinds(done.messages) == [("withdrawal", "s1", 2), ("current", "lead-1", None)]
    assert (done.withdrawals[0].cause, done.withdrawals[0].reason) == ("not_routed", "unsubscribed")
    # a lead without a route has nothing to withdraw, whatever happens to it
    assert sequenced([Ended("lead-2", reason="x", not_routed=True)], {}, at=NOW).messages == []


def test_a_batch_is_walked_in_order_per_lead_and_leads_do_not_mix() -> None:
    stored = {"lead-2": CurrentRoute("lead-2", sequence=7, decision_id="n2", route="nurture")}
    first = decision(SDR, "s1")
    other = decision(SDR, "s2", lead_id="lead-2")
    events: list[Sent | Ended] = [
        Sent(first),
        Sent(other),
        Ended("lead-1", reason="disqualified", not_routed=True),
    ]

    done = sequenced(events, stored, at=NOW)

    assert kinds(done.messages) == [
        ("sdr", "s1", 1),
        ("current", "lead-1", "s1"),
        ("withdrawal", "n2", 8),
        ("sdr", "s2", 9),
        ("current", "lead-2", "s2"),
        ("withdrawal", "s1", 2),  # sent and withdrawn in the same batch: both, in order
        ("current", "lead-1", None),
    ]
    assert done.routes == {
        "lead-1": CurrentRoute("lead-1", 2, None, None),
        "lead-2": CurrentRoute("lead-2", 9, "s2", "sdr"),
    }
