"""An erasure takes the erased leads out of score's stored simulation results
(`erasure.scrubbed_simulation`): their entries and ids go, every count stays."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.score.engine.rescoring import LeadChange, ScoreView, SimulationSummary
from services.score.erasure import scrubbed_simulation

VIEW = ScoreView(fit=40, behaviour=30, total=70, priority="A2", qualifies_as_mql=True)


def change(lead_id: str) -> LeadChange:
    return LeadChange(lead_id=lead_id, email=f"{lead_id}@northwind.io", stage="lead",
                      before=VIEW, after=VIEW)  # fmt: skip


def result(*, becoming: list[str], dropping: list[str]) -> dict[str, Any]:
    """A simulation's result as it is stored (the summary's JSON)."""
    summary = SimulationSummary(
        live_version="1", candidate_version="draft", as_of=datetime(2026, 11, 2, tzinfo=UTC),
        leads=10, mqls_now=4, mqls_with_candidate=5, scores_changed=6, grades_changed=2,
        stage_changes=len(becoming) + len(dropping), would_become_mql=len(becoming),
        would_drop_below_mql=len(dropping), becoming_mql=[change(i) for i in becoming],
        dropping_below_mql=[change(i) for i in dropping], becoming_ids=becoming,
        dropping_ids=dropping,
    )  # fmt: skip
    return summary.model_dump(mode="json")


def test_the_erased_leads_entries_and_ids_go_and_every_count_stays() -> None:
    stored = result(becoming=["a", "erased-1", "b"], dropping=["erased-2", "c"])
    scrubbed = scrubbed_simulation(stored, {"erased-1", "erased-2", "elsewhere"})
    assert scrubbed is not None
    assert [c["lead_id"] for c in scrubbed["becoming_mql"]] == ["a", "b"]
    assert [c["lead_id"] for c in scrubbed["dropping_below_mql"]] == ["c"]
    assert scrubbed["becoming_ids"] == ["a", "b"]
    assert scrubbed["dropping_ids"] == ["c"]
    assert scrubbed["ids_complete"] is False  # the ids no longer hold every lead counted
    assert "erased-1@northwind.io" not in str(scrubbed)
    counts = ("leads", "mqls_now", "mqls_with_candidate", "scores_changed", "grades_changed",
              "stage_changes", "would_become_mql", "would_drop_below_mql")  # fmt: skip
    assert {k: scrubbed[k] for k in counts} == {k: stored[k] for k in counts}
    # the stored result itself is not changed, and still reads as a summary
    assert [c["lead_id"] for c in stored["becoming_mql"]] == ["a", "erased-1", "b"]
    assert SimulationSummary.model_validate(scrubbed).would_become_mql == 3


def test_a_result_that_lists_none_of_the_leads_is_left_alone() -> None:
    assert scrubbed_simulation(result(becoming=["a"], dropping=["b"]), {"c"}) is None
    assert scrubbed_simulation({}, {"c"}) is None


def test_a_lead_listed_by_id_only_goes_too() -> None:
    """Past the first listed leads, a result keeps ids alone (`rescoring.KEPT_IDS`)."""
    stored = result(becoming=["a"], dropping=[])
    stored["becoming_ids"] = ["a", "erased"]
    scrubbed = scrubbed_simulation(stored, {"erased"})
    assert scrubbed is not None
    assert scrubbed["becoming_ids"] == ["a"]
    assert scrubbed["becoming_mql"] == stored["becoming_mql"]
    assert scrubbed["ids_complete"] is False


def test_lists_of_another_shape_are_left_as_they_are() -> None:
    odd = {"becoming_mql": "none", "dropping_below_mql": [["x"], {"lead_id": ["x"]}, 3],
           "becoming_ids": [{"x": 1}, None, "x"], "dropping_ids": 7}  # fmt: skip
    scrubbed = scrubbed_simulation(odd, {"x"})
    assert scrubbed == {**odd, "becoming_ids": [{"x": 1}, None], "ids_complete": False}
    assert scrubbed_simulation({**odd, "becoming_ids": []}, {"x"}) is None
