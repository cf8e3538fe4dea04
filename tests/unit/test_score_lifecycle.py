"""The lifecycle state machine: every legal move, every illegal one refused."""

from __future__ import annotations

import itertools

import pytest

from services.score.engine.lifecycle import (
    FEEDBACK_TRIGGERS,
    LEGAL,
    IllegalTransition,
    Trigger,
    apply,
    earned_move,
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
    (Stage.MQL, Trigger.SDR_ACCEPTED): Stage.SQL,
    (Stage.SQL, Trigger.AE_CONFIRMED): Stage.SQO,
    (Stage.SQL, Trigger.WON): Stage.CUSTOMER,
    (Stage.SQO, Trigger.WON): Stage.CUSTOMER,
    (Stage.MQL, Trigger.REJECTED): Stage.RECYCLED,
    (Stage.SQL, Trigger.REJECTED): Stage.RECYCLED,
    (Stage.SQL, Trigger.LOST): Stage.RECYCLED,
    (Stage.SQO, Trigger.LOST): Stage.RECYCLED,
    (Stage.MQL, Trigger.DECAYED): Stage.RECYCLED,
    **{
        (stage, Trigger.DISQUALIFIED): Stage.DISQUALIFIED
        for stage in Stage
        if stage not in (Stage.CUSTOMER, Stage.DISQUALIFIED)
    },
}


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


ILLEGAL = sorted(pair for pair in itertools.product(Stage, Trigger) if pair not in EXPECTED_LEGAL)


@pytest.mark.parametrize(("stage", "trigger"), ILLEGAL)
def test_every_illegal_move_is_refused(stage: Stage, trigger: Trigger) -> None:
    with pytest.raises(IllegalTransition) as refused:
        apply(stage, trigger, "because")
    assert f"'{trigger.value}' does not apply to a lead in stage '{stage.value}'" in str(
        refused.value
    )


def test_no_way_out_of_customer_or_disqualified() -> None:
    assert not [pair for pair in LEGAL if pair[0] in (Stage.CUSTOMER, Stage.DISQUALIFIED)]


def test_every_crm_outcome_has_a_trigger() -> None:
    assert set(FEEDBACK_TRIGGERS) == set(Outcome.__args__)  # type: ignore[attr-defined]


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
