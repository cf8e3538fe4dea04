"""The versions page's diff (`services.console.version_diff`) and the SDR load a rules draft
would move (`services.console.sdr_load`)."""

from __future__ import annotations

from services.console.queries import RepLoad
from services.console.sdr_load import LoadRow, load_rows
from services.console.version_diff import DiffLine, yaml_diff

BEFORE = "rules:\n- id: demo\n  points: 60\n- id: vp\n  points: 25\ncaps:\n  fit: 100\n"


def test_the_same_text_has_no_diff() -> None:
    assert yaml_diff(BEFORE, BEFORE) == []


def test_a_changed_line_is_removed_then_added_within_its_hunk() -> None:
    after = BEFORE.replace("points: 60", "points: 20")
    lines = yaml_diff(BEFORE, after)
    assert lines[0].kind == "hunk"
    assert [line for line in lines if line.kind in ("added", "removed")] == [
        DiffLine("removed", "  points: 60"),
        DiffLine("added", "  points: 20"),
    ]
    # a list item's line ("- id: demo") is context, not taken for a diff's header or a removal
    assert DiffLine("same", "- id: demo") in lines


def test_a_removed_list_item_keeps_its_dash() -> None:
    after = BEFORE.replace("- id: vp\n  points: 25\n", "")
    removed = [line.text for line in yaml_diff(BEFORE, after) if line.kind == "removed"]
    assert removed == ["- id: vp", "  points: 25"]


def test_the_load_rows_join_recent_leads_and_the_preview_per_rep() -> None:
    recent = [RepLoad("sdr-emea", "rep-grace", "Grace Hopper", 12),
              RepLoad("sdr-emea", "rep-alan", "Alan Turing", 7),
              RepLoad("sdr-emea", "sdr-unassigned", None, 2)]  # fmt: skip
    preview = {
        "reps": [
            {"rep_id": "rep-grace", "name": "Grace Hopper", "team": "sdr-emea", "gained": 3,
             "lost": 1},
            {"rep_id": "rep-new", "name": "Ada Lovelace", "team": "sdr-emea", "gained": 2,
             "lost": 0},
            {"rep_id": "owner-1", "name": "An Owner", "team": None, "gained": 1, "lost": 0},
        ],
        "queues": [{"queue": "sdr-unassigned", "gained": 4, "lost": 0}],
    }  # fmt: skip
    rows = load_rows(recent, preview)
    assert rows == [
        LoadRow("account owners", "owner-1", "An Owner", 0, 1, 0),
        LoadRow("sdr-emea", "rep-new", "Ada Lovelace", 0, 2, 0),
        LoadRow("sdr-emea", "rep-alan", "Alan Turing", 7, 0, 0),
        LoadRow("sdr-emea", "rep-grace", "Grace Hopper", 12, 3, 1),
        LoadRow("sdr-emea", "sdr-unassigned", "sdr-unassigned", 2, 4, 0),
    ]
    assert rows[3].with_draft == 14
