"""The lifecycle state machine: marketing's moves (every legal one, every illegal one refused),
and what every CRM outcome does to a lead in every stage."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.score.engine.lifecycle import (
    FEEDBACK_TRIGGERS,
    LEGAL,
    OUTCOME_STAGES,
    IllegalTransition,
    Trigger,
    apply,
    earned_move,
    sales_move,
    unmerged_move,
)
from shared.contracts import Stage
from shared.contracts.crm_feedback import Outcome

EXPECTED_LEGAL: dict[tuple[Stage, Trigger], Stage] = {
    (Stage.ANONYMOUS, Trigger.IDENTIFIED): Stage.KNOWN,
    (Stage.ANONYMOUS, Trigger.ENGAGED): Stage.LEAD,
    (Stage.KNOWN, Trigger.ENGAGED): Stage.LEAD,
    (Stage.ANONYMOUS, Trigger.QUALIFIED): Stage.MQL,
    (Stage.KNOWN, Trigger.QUALIFIED): Stage.MQL,
    (Stage.LEAD, Trigger.QUALIFIED): Stage.MQL,
    (Stage.RECYCLED, Trigger.QUALIFIED): Stage.MQL,
    (Stage.MQL, Trigger.DECAYED): Stage.RECYCLED,
}
MARKETING_TRIGGERS = (Trigger.IDENTIFIED, Trigger.ENGAGED, Trigger.QUALIFIED, Trigger.DECAYED)


def test_the_table_is_exactly_the_documented_one() -> None:
    assert LEGAL == EXPECTED_LEGAL


@pytest.mark.parametrize(("stage", "trigger"), sorted(EXPECTED_LEGAL))
def test_every_legal_move(stage: Stage, trigger: Trigger) -> None:
    moved = apply(stage, trigger, "because")
    assert (moved.from_stage, moved.to_stage, moved.reason) == (
        stage,
        EXPECTED_LEGAL[(stage, trigger)],
        "because",
    )


ILLEGAL = sorted(
    pair for pair in itertools.product(Stage, MARKETING_TRIGGERS) if pair not in EXPECTED_LEGAL
)


@pytest.mark.parametrize(("stage", "trigger"), ILLEGAL)
def test_every_illegal_move_is_refused(stage: Stage, trigger: Trigger) -> None:
    with pytest.raises(IllegalTransition) as refused:
        apply(stage, trigger, "because")
    assert f"'{trigger.value}' does not apply to a lead in stage '{stage.value}'" in str(
        refused.value
    )


def test_marketing_never_moves_a_lead_out_of_sales_hands() -> None:
    sales_stages = (Stage.SQL, Stage.SQO, Stage.CUSTOMER, Stage.DISQUALIFIED)
    assert not [pair for pair in LEGAL if pair[0] in sales_stages]


def test_every_crm_outcome_has_a_trigger_and_a_stage() -> None:
    assert set(FEEDBACK_TRIGGERS) == set(Outcome.__args__)  # type: ignore[attr-defined]
    assert set(OUTCOME_STAGES) == set(FEEDBACK_TRIGGERS)


# ---- what sales reports: every stage x every CRM outcome ---------------------------------------

A, K, L, M = Stage.ANONYMOUS, Stage.KNOWN, Stage.LEAD, Stage.MQL
SQL, SQO, C = Stage.SQL, Stage.SQO, Stage.CUSTOMER
R, D = Stage.RECYCLED, Stage.DISQUALIFIED
OUTCOMES = ("accepted", "qualified", "won", "rejected", "lost", "disqualified")

# (stage, outcome) -> (result, stage after, skipped stages). The reasons, by row:
SALES_TABLE: dict[tuple[Stage, str], tuple[str, Stage, tuple[Stage, ...]]] = {
    # Before marketing qualified the lead (sales-sourced, or missed by the rules): sales'
    # progress applies, jumping the stages it did not pass; a loss recycles it (sales said no).
    (A, "accepted"): ("applied", SQL, (K, L, M)),
    (A, "qualified"): ("applied", SQO, (K, L, M, SQL)),
    (A, "won"): ("applied", C, (K, L, M, SQL, SQO)),
    (A, "rejected"): ("applied", R, ()),
    (A, "lost"): ("applied", R, ()),
    (A, "disqualified"): ("applied", D, ()),
    (K, "accepted"): ("applied", SQL, (L, M)),
    (K, "qualified"): ("applied", SQO, (L, M, SQL)),
    (K, "won"): ("applied", C, (L, M, SQL, SQO)),
    (K, "rejected"): ("applied", R, ()),
    (K, "lost"): ("applied", R, ()),
    (K, "disqualified"): ("applied", D, ()),
    (L, "accepted"): ("applied", SQL, (M,)),
    (L, "qualified"): ("applied", SQO, (M, SQL)),
    (L, "won"): ("applied", C, (M, SQL, SQO)),
    (L, "rejected"): ("applied", R, ()),
    (L, "lost"): ("applied", R, ()),
    (L, "disqualified"): ("applied", D, ()),
    # marketing's path: an mql that sales turns down or loses is recycled with the reason
    (M, "accepted"): ("applied", SQL, ()),
    (M, "qualified"): ("applied", SQO, (SQL,)),
    (M, "won"): ("applied", C, (SQL, SQO)),
    (M, "rejected"): ("applied", R, ()),
    (M, "lost"): ("applied", R, ()),
    (M, "disqualified"): ("applied", D, ()),
    # in sales' hands: an outcome that does not move it further changes nothing
    (SQL, "accepted"): ("unchanged", SQL, ()),
    (SQL, "qualified"): ("applied", SQO, ()),
    (SQL, "won"): ("applied", C, (SQO,)),
    (SQL, "rejected"): ("applied", R, ()),
    (SQL, "lost"): ("applied", R, ()),
    (SQL, "disqualified"): ("applied", D, ()),
    (SQO, "accepted"): ("unchanged", SQO, ()),  # already past sql
    (SQO, "qualified"): ("unchanged", SQO, ()),
    (SQO, "won"): ("applied", C, ()),
    (SQO, "rejected"): ("applied", R, ()),
    (SQO, "lost"): ("applied", R, ()),
    (SQO, "disqualified"): ("applied", D, ()),
    # a customer stays a customer: the only moves that truly cannot happen
    (C, "accepted"): ("refused", C, ()),
    (C, "qualified"): ("refused", C, ()),
    (C, "won"): ("unchanged", C, ()),
    (C, "rejected"): ("refused", C, ()),
    (C, "lost"): ("refused", C, ()),
    (C, "disqualified"): ("refused", C, ()),
    # recycled ("sales said not now"): sales may take it back directly, without it
    # re-qualifying as an mql (recorded as skipped)
    (R, "accepted"): ("applied", SQL, (M,)),
    (R, "qualified"): ("applied", SQO, (M, SQL)),
    (R, "won"): ("applied", C, (M, SQL, SQO)),
    (R, "rejected"): ("unchanged", R, ()),
    (R, "lost"): ("unchanged", R, ()),
    (R, "disqualified"): ("applied", D, ()),
    # disqualified by sales earlier: a later outcome is sales changing its mind
    (D, "accepted"): ("applied", SQL, (M,)),
    (D, "qualified"): ("applied", SQO, (M, SQL)),
    (D, "won"): ("applied", C, (M, SQL, SQO)),
    (D, "rejected"): ("applied", R, ()),
    (D, "lost"): ("applied", R, ()),
    (D, "disqualified"): ("unchanged", D, ()),
}
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_the_sales_table_covers_every_stage_and_outcome() -> None:
    assert set(SALES_TABLE) == set(itertools.product(Stage, OUTCOMES))


@pytest.mark.parametrize(("stage", "outcome"), sorted(SALES_TABLE))
def test_what_each_crm_outcome_does_to_a_lead_in_each_stage(stage: Stage, outcome: str) -> None:
    result, after, skipped = SALES_TABLE[(stage, outcome)]

    decision = sales_move(stage, outcome, reason=f"CRM: {outcome}", at=T0, latest_at=None)

    assert decision.result == result, decision.detail
    if result == "applied":
        assert decision.move is not None
        move = decision.move
        assert (move.from_stage, move.to_stage, move.skipped) == (stage, after, skipped)
        assert (move.trigger, move.by_sales) == (FEEDBACK_TRIGGERS[outcome], True)
    else:
        assert decision.move is None
        assert decision.detail


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_an_outcome_older_than_the_latest_applied_one_is_superseded(outcome: str) -> None:
    decision = sales_move(
        Stage.CUSTOMER, outcome, reason="late", at=T0, latest_at=T0 + timedelta(days=3)
    )

    assert (decision.result, decision.move) == ("superseded", None)
    assert "older" in decision.detail


def test_won_before_accepted_ends_as_a_customer_and_a_later_loss_still_applies() -> None:
    won = sales_move(L, "won", reason="won", at=T0 + timedelta(days=9), latest_at=None)
    assert won.move is not None
    assert won.move.to_stage == C
    late_accept = sales_move(C, "accepted", reason="a", at=T0, latest_at=T0 + timedelta(days=9))
    assert late_accept.result == "superseded"
    lost_then_won_late = sales_move(R, "won", reason="w", at=T0, latest_at=T0 + timedelta(days=1))
    assert lost_then_won_late.result == "superseded", "the later loss is what holds"


@pytest.mark.parametrize(
    ("stage", "identified", "engaged", "qualifies", "expected"),
    [
        (Stage.ANONYMOUS, False, True, True, None),  # nobody to contact
        (Stage.ANONYMOUS, True, False, False, Stage.KNOWN),
        (Stage.ANONYMOUS, True, True, False, Stage.LEAD),
        (Stage.KNOWN, True, True, True, Stage.MQL),  # skips lead
        (Stage.KNOWN, True, False, False, None),
        (Stage.LEAD, True, True, False, None),
        (Stage.RECYCLED, True, True, False, None),
        (Stage.RECYCLED, True, True, True, Stage.MQL),
        (Stage.MQL, True, True, True, None),
        (Stage.SQL, True, True, True, None),
        (Stage.DISQUALIFIED, True, True, True, None),
    ],
)
def test_earned_move(
    stage: Stage, identified: bool, engaged: bool, qualifies: bool, expected: Stage | None
) -> None:
    moved = earned_move(
        stage, identified=identified, engaged=engaged, qualifies=qualifies, why_qualified="A1"
    )
    assert (moved.to_stage if moved else None) == expected


# ---- after an unmerge: the stage a lead's own messages earn ------------------------------------


@pytest.mark.parametrize(
    ("stage", "earned", "expected"),
    [
        # the survivor qualified only with the merged lead's points: back to lead
        (Stage.MQL, Stage.LEAD, Stage.LEAD),
        # the restored lead's own messages earn more than it had when it was merged
        (Stage.KNOWN, Stage.MQL, Stage.MQL),
        (Stage.LEAD, Stage.LEAD, None),  # nothing to correct
        # sales stages are what the CRM said about this person: they stay
        (Stage.SQL, Stage.LEAD, None),
        (Stage.CUSTOMER, Stage.KNOWN, None),
        (Stage.RECYCLED, Stage.MQL, None),
        (Stage.DISQUALIFIED, Stage.MQL, None),
    ],
)
def test_an_unmerge_moves_a_marketing_stage_to_what_the_leads_own_messages_earn(
    stage: Stage, earned: Stage, expected: Stage | None
) -> None:
    move = unmerged_move(stage, earned, "unmerge m-1")

    assert (move.to_stage if move else None) == expected
    if move is not None:
        assert (move.from_stage, move.trigger, move.reason) == (
            stage,
            Trigger.UNMERGED,
            "unmerge m-1",
        )
