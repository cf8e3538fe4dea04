"""Speed-to-lead and SLA outcomes (`services.console.speed`): the first SDR decision of a move is
measured (an SLA reassignment is not a new response, but counts breached and reassigned or
escalated for the rep it replaced); the first acceptance is measured and met or breached; a
queued decision counts under its queue; one current route per lead (a later decision, a CRM
report or a stage change closes the open ones); a message applied twice changes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.console.histograms import bucket_of
from services.console.speed import (
    DecisionRow,
    SpeedTally,
    on_decision,
    on_feedback,
    on_stage_change,
    row_of,
)
from shared.contracts import CrmFeedback, RoutingDecision, Stage
from shared.topics import CRM_FEEDBACK, ROUTING_NURTURE, ROUTING_SDR
from tests.unit.builders import lifecycle_change

SDR_EXAMPLES: list[dict[str, Any]] = orjson.loads(ROUTING_SDR.examples_file.read_bytes())
NURTURE_EXAMPLE: dict[str, Any] = orjson.loads(ROUTING_NURTURE.examples_file.read_bytes())[0]
FEEDBACK_EXAMPLE: dict[str, Any] = orjson.loads(CRM_FEEDBACK.examples_file.read_bytes())[0]

RECEIVED = datetime(2026, 3, 2, 9, 15, 41, 87_532, tzinfo=UTC)
DECIDED = datetime(2026, 3, 2, 9, 15, 41, 402_918, tzinfo=UTC)
DUE = DECIDED + timedelta(minutes=5)
DAY = date(2026, 3, 2)
HOUR = timedelta(hours=1)
GRACE = (DAY, "sdr-emea", "rep-grace")
ALAN = (DAY, "sdr-emea", "rep-alan")
NO_OUTCOME = {"met": 0, "breached": 0, "reassigned": 0, "escalated": 0}


def sdr(**fields: Any) -> RoutingDecision:
    """Grace's round-robin decision for lead-1 (received RECEIVED, decided DECIDED, due DUE,
    317 ms to lead)."""
    defaults = {"decision_id": "d-grace", "lead_id": "lead-1"}
    return RoutingDecision.model_validate({**SDR_EXAMPLES[0], **defaults, **fields})


def reassigned(strategy: str = "sla_reassigned", **fields: Any) -> RoutingDecision:
    """Alan's decision replacing Grace's on an SLA breach, 5 min later, due 5 min after."""
    at = DUE + timedelta(seconds=4)
    defaults = {
        "decision_id": "d-alan",
        "lead_id": "lead-1",
        "strategy": strategy,
        "supersedes": "d-grace",
        "decided_at": at,
        "sla_due_at": at + timedelta(minutes=5),
    }
    return RoutingDecision.model_validate({**SDR_EXAMPLES[4], **defaults, **fields})


def queued(**fields: Any) -> RoutingDecision:
    """A decision for lead-1 waiting in the queue sdr-unassigned (nobody could take it)."""
    defaults = {
        "decision_id": "d-queue",
        "lead_id": "lead-1",
        "received_at": RECEIVED,
        "decided_at": DECIDED,
        "sla_due_at": DUE,
        "speed_to_lead_ms": 317,
    }
    return RoutingDecision.model_validate({**SDR_EXAMPLES[3], **defaults, **fields})


def nurture(**fields: Any) -> RoutingDecision:
    """lead-1 put on the high-fit nurture track at DECIDED."""
    defaults = {"decision_id": "d-nurture", "lead_id": "lead-1", "decided_at": DECIDED}
    return RoutingDecision.model_validate({**NURTURE_EXAMPLE, **defaults, **fields})


def feedback(at: datetime, outcome: str = "accepted", **fields: Any) -> CrmFeedback:
    defaults = {"feedback_id": f"f-{outcome}-{at.isoformat()}", "lead_id": "lead-1"}
    fixed = {"at": at, "outcome": outcome}
    return CrmFeedback.model_validate({**FEEDBACK_EXAMPLE, **defaults, **fields, **fixed})


def apply(*decisions: RoutingDecision) -> tuple[dict[str, DecisionRow], SpeedTally]:
    rows: dict[str, DecisionRow] = {}
    tally = SpeedTally()
    for decision in decisions:
        on_decision(rows, decision, tally)
    return rows, tally


def still_open(rows: dict[str, DecisionRow]) -> set[str]:
    return {row.decision_id for row in rows.values() if row.closed_at is None}


# --- decisions -----------------------------------------------------------------------------


def test_the_first_sdr_decision_is_measured_for_its_rep_on_its_day() -> None:
    rows, tally = apply(sdr())

    assert tally.speed == {(*GRACE, "decision", bucket_of(317)): 1}
    assert tally.sla == {}
    assert rows == {"d-grace": row_of(sdr())}
    assert still_open(rows) == {"d-grace"}


def test_a_decision_row_keeps_the_contracts_facts() -> None:
    row = row_of(sdr())

    assert (row.route, row.team, row.rep, row.rep_name, row.target) == (
        "sdr",
        "sdr-emea",
        "rep-grace",
        "Grace Hopper",
        "Grace Hopper",
    )
    assert (row.received_at, row.decided_at, row.sla_due_at, row.speed_ms) == (
        RECEIVED,
        DECIDED,
        DUE,
        317,
    )
    assert (row.queued, row.accepted_at, row.closed_at) == (False, None, None)


@pytest.mark.parametrize(
    ("before", "reports"),
    [
        ([sdr()], []),  # at once
        ([sdr()], [feedback(DECIDED + timedelta(minutes=1))]),  # after it was accepted
        ([sdr(), reassigned()], []),  # after it was replaced on breach: not reopened
        ([sdr(), nurture(decided_at=DECIDED + HOUR)], []),  # after a later decision
    ],
    ids=["at once", "accepted", "replaced on breach", "after a later decision"],
)
def test_a_redelivered_decision_changes_nothing(
    before: list[RoutingDecision], reports: list[CrmFeedback]
) -> None:
    rows, _ = apply(*before)
    for report in reports:
        on_feedback(rows, report, SpeedTally())
    held = dict(rows)
    tally = SpeedTally()

    on_decision(rows, sdr(), tally)
    on_decision(rows, before[-1], tally)

    assert rows == held
    assert tally == SpeedTally()


@pytest.mark.parametrize(
    "decision",
    [
        nurture(),  # a nurture track is no response by sales
        reassigned(),  # an SLA reassignment is not a new response
        reassigned("sla_escalated"),
    ],
    ids=["nurture", "sla_reassigned", "sla_escalated"],
)
def test_only_a_first_sdr_decision_is_measured(decision: RoutingDecision) -> None:
    _, tally = apply(decision)

    assert tally.speed == {}


@pytest.mark.parametrize(
    ("strategy", "outcome"),
    [("sla_reassigned", "reassigned"), ("sla_escalated", "escalated")],
)
def test_an_sla_replacement_counts_breached_for_the_replaced_rep_and_is_not_measured(
    strategy: str, outcome: str
) -> None:
    rows, tally = apply(sdr(), reassigned(strategy))

    assert tally.speed == {(*GRACE, "decision", bucket_of(317)): 1}  # Grace's only
    assert tally.sla == {GRACE: {**NO_OUTCOME, "breached": 1, outcome: 1}}
    grace = rows["d-grace"]
    assert (grace.closed_at, grace.closed_reason) == (
        reassigned().decided_at,
        f"SLA breached: {strategy}",
    )
    assert still_open(rows) == {"d-alan"}


def test_an_sla_replacement_is_counted_on_the_replaced_decisions_day() -> None:
    late = datetime(2026, 3, 3, 0, 2, tzinfo=UTC)  # the SLA ran out after midnight

    _, tally = apply(sdr(), reassigned(decided_at=late, sla_due_at=late + timedelta(hours=1)))

    assert set(tally.sla) == {GRACE}


def test_replacing_a_decision_already_accepted_counts_no_breach() -> None:
    rows, _ = apply(sdr())
    on_feedback(rows, feedback(DECIDED + timedelta(minutes=2)), SpeedTally())
    tally = SpeedTally()

    on_decision(rows, reassigned(), tally)

    assert tally == SpeedTally()


def test_a_replacement_of_a_decision_the_console_never_saw_counts_nothing() -> None:
    _, tally = apply(reassigned(supersedes="d-unknown"))

    assert tally == SpeedTally()


# --- acceptance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted_at", "outcome"),
    [
        (DECIDED + timedelta(minutes=3), "met"),
        (DUE, "met"),  # at the due time exactly: in time
        (DUE + timedelta(microseconds=1), "breached"),
        (DUE + timedelta(hours=20), "breached"),  # the next day: on the decision's day
    ],
)
def test_the_first_acceptance_is_measured_from_receipt_and_met_or_breached(
    accepted_at: datetime, outcome: str
) -> None:
    rows, _ = apply(sdr())
    tally = SpeedTally()

    on_feedback(rows, feedback(accepted_at), tally)

    ms = (accepted_at - RECEIVED).total_seconds() * 1000
    assert tally.speed == {(*GRACE, "acceptance", bucket_of(ms)): 1}
    assert tally.sla == {GRACE: {**NO_OUTCOME, outcome: 1}}
    assert rows["d-grace"].accepted_at == accepted_at


def test_only_the_first_acceptance_counts() -> None:
    rows, _ = apply(sdr())
    first, second = DECIDED + timedelta(minutes=1), DUE + timedelta(minutes=30)
    on_feedback(rows, feedback(first), SpeedTally())
    tally = SpeedTally()

    on_feedback(rows, feedback(second, feedback_id="f-again"), tally)

    assert tally == SpeedTally()
    assert rows["d-grace"].accepted_at == first


def test_an_acceptance_after_a_reassignment_counts_for_the_new_rep_against_its_sla() -> None:
    rows, _ = apply(sdr(), reassigned())
    at = reassigned().decided_at + timedelta(minutes=2)
    tally = SpeedTally()

    on_feedback(rows, feedback(at), tally)

    ms = (at - RECEIVED).total_seconds() * 1000
    assert tally.speed == {(*ALAN, "acceptance", bucket_of(ms)): 1}
    assert tally.sla == {ALAN: {**NO_OUTCOME, "met": 1}}
    assert (rows["d-alan"].accepted_at, rows["d-grace"].accepted_at) == (at, None)


def test_a_decision_without_a_due_time_is_met_whenever_accepted() -> None:
    rows, _ = apply(sdr(sla_due_at=None))
    tally = SpeedTally()

    on_feedback(rows, feedback(DECIDED + timedelta(days=2)), tally)

    assert tally.sla == {GRACE: {**NO_OUTCOME, "met": 1}}


def test_an_acceptance_reported_before_the_receipt_is_measured_as_0_ms() -> None:
    rows, _ = apply(sdr())
    tally = SpeedTally()

    on_feedback(rows, feedback(RECEIVED - timedelta(seconds=5)), tally)

    assert tally.speed == {(*GRACE, "acceptance", 0): 1}


@pytest.mark.parametrize("outcome", ["rejected", "qualified", "disqualified", "won", "lost"])
def test_another_crm_outcome_is_no_acceptance_but_closes_the_open_decisions(outcome: str) -> None:
    rows, _ = apply(sdr())
    at = DECIDED + timedelta(minutes=1)
    tally = SpeedTally()

    on_feedback(rows, feedback(at, outcome), tally)

    assert tally == SpeedTally()
    assert (rows["d-grace"].closed_at, rows["d-grace"].closed_reason) == (
        at,
        f"CRM reported {outcome}",
    )
    assert rows["d-grace"].accepted_at is None


def test_an_acceptance_of_a_lead_with_no_sdr_decision_counts_nothing() -> None:
    rows, _ = apply(nurture())
    tally = SpeedTally()

    on_feedback(rows, feedback(DECIDED + timedelta(minutes=1)), tally)

    assert tally == SpeedTally()
    assert still_open(rows) == set()


# --- queues --------------------------------------------------------------------------------

QUEUE = (DAY, "", "queue:sdr-unassigned")


def test_a_queued_decision_counts_under_its_queue() -> None:
    rows, tally = apply(queued())

    assert tally.speed == {(*QUEUE, "decision", bucket_of(317)): 1}
    row = rows["d-queue"]
    assert (row.queued, row.team, row.rep, row.rep_name, row.target) == (
        True,
        "",
        "queue:sdr-unassigned",
        None,
        "queue sdr-unassigned",
    )


def test_a_queued_decision_accepted_late_is_breached_for_the_queue() -> None:
    rows, _ = apply(queued())
    tally = SpeedTally()

    on_feedback(rows, feedback(DUE + timedelta(minutes=1)), tally)

    assert tally.sla == {QUEUE: {**NO_OUTCOME, "breached": 1}}


def test_a_queued_decision_replaced_on_breach_counts_for_the_queue() -> None:
    _, tally = apply(queued(), reassigned(supersedes="d-queue"))

    assert tally.sla == {QUEUE: {**NO_OUTCOME, "breached": 1, "reassigned": 1}}


# --- one current route per lead ------------------------------------------------------------


def test_a_later_decision_closes_the_earlier_open_ones() -> None:
    later = DECIDED + timedelta(days=2)
    rows, _ = apply(
        nurture(decided_at=DECIDED - timedelta(days=1)),
        sdr(decided_at=DECIDED),
        sdr(decision_id="d-later", decided_at=later),
    )

    assert still_open(rows) == {"d-later"}
    assert {(r.closed_at, r.closed_reason) for i, r in rows.items() if i != "d-later"} == {
        (DECIDED, "replaced by a later decision"),
        (later, "replaced by a later decision"),
    }


def test_a_closed_decision_stays_closed_as_it_was() -> None:
    rows, _ = apply(nurture(decided_at=DECIDED - timedelta(days=1)), sdr())
    closed = rows["d-nurture"]

    on_decision(rows, sdr(decision_id="d-later", decided_at=DECIDED + HOUR), SpeedTally())

    assert rows["d-nurture"] == closed


ORDERS = {"nurture read first": ("nurture", "sdr"), "sdr read first": ("sdr", "nurture")}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_of_a_nurture_and_an_sdr_decision_at_one_time_the_sdr_one_stays_open(
    order: tuple[str, str],
) -> None:
    made = {"nurture": nurture(), "sdr": sdr()}

    rows, _ = apply(*(made[name] for name in order))

    assert rows["d-grace"].closed_at is None


@pytest.mark.parametrize(
    "order",
    [
        ORDERS["nurture read first"],
        pytest.param(
            ORDERS["sdr read first"],
        ),
    ],
    ids=ORDERS.keys(),
)
def test_of_a_nurture_and_an_sdr_decision_at_one_time_only_the_sdr_one_stays_open(
    order: tuple[str, str],
) -> None:
    # `_earlier`: "a nurture decision comes before an SDR decision, whichever topic the console
    # read first" - so the lead ends with one current route either way.
    made = {"nurture": nurture(), "sdr": sdr()}

    rows, _ = apply(*(made[name] for name in order))

    assert still_open(rows) == {"d-grace"}
    assert rows["d-nurture"].closed_reason == "replaced by a later decision"


def test_an_earlier_decision_read_late_does_not_become_the_current_route() -> None:
    # routing.nurture lagging behind routing.sdr: the lead's earlier nurture decision (for its
    # move to lead) arrives after the SDR decision of its move to mql.
    rows, _ = apply(sdr(), nurture(decided_at=DECIDED - HOUR))

    assert still_open(rows) == {"d-grace"}


@pytest.mark.parametrize(
    ("moved_after", "closed"),
    [
        (HOUR, True),  # the lead moved on after the decision
        (timedelta(0), True),  # at the decision's time
        (-timedelta(milliseconds=300), False),  # the move the decision answers, read after it
    ],
)
def test_a_stage_change_closes_the_open_decisions_made_before_it(
    moved_after: timedelta, closed: bool
) -> None:
    rows, _ = apply(sdr())
    at = DECIDED + moved_after

    on_stage_change(rows, lifecycle_change(to_stage=Stage.SQL, from_stage=Stage.MQL, at=at))

    row = rows["d-grace"]
    if closed:
        assert (row.closed_at, row.closed_reason) == (at, "lead moved to sql")
    else:
        assert row.closed_at is None


def test_a_stage_change_leaves_a_decision_already_closed_as_it_was() -> None:
    rows, _ = apply(sdr(), reassigned())
    grace = rows["d-grace"]

    on_stage_change(rows, lifecycle_change(at=DECIDED + timedelta(days=1)))

    assert rows["d-grace"] == grace
    assert rows["d-alan"].closed_reason == "lead moved to mql"
