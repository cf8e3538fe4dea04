"""A lead's story on one timeline (`services.console.timeline`): what the console holds (stage
changes, routing decisions and what became of them, CRM reports) and what score explains
(events with the rule lines they triggered, identity merges), oldest first; the ledger's shown
sum is the sum of the points as they count now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.console.lead_record import LeadRecord
from services.console.queries import LeadStory
from services.console.score_client import ScoreExplanation
from services.console.speed import DecisionRow
from services.console.timeline import Entry, Points, ledger_of, timeline_of
from shared.contracts import Stage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
RECORD = LeadRecord(
    lead_id="lead-1", created_at=T0, stage=Stage.SQL, stage_at=T0 + 30 * MIN, moves=()
)


def line(message_id: str, at: datetime, value_now: float, **fields: Any) -> dict[str, Any]:
    """A rule line of score's ledger: `value_now` points (as awarded: its integer part)."""
    defaults = {
        "rule_id": f"rule-{message_id}",
        "kind": "behaviour",
        "reason": f"because of {message_id}",
        "points": int(value_now),
        "value_now": value_now,
        "event_time": at,
        "message_id": message_id,
    }
    return {**defaults, **fields}


def explanation(
    lines: list[dict[str, Any]],
    events: list[dict[str, Any]] = (),  # type: ignore[assignment]
    identity: list[dict[str, Any]] = (),  # type: ignore[assignment]
    total: int = 0,
) -> ScoreExplanation:
    return ScoreExplanation.model_validate(
        {
            "lead_id": "lead-1",
            "stage": "sql",
            "as_of": T0 + timedelta(days=1),
            "rule_version": "2026.11-1",
            "score": {"fit": 0, "behaviour": total, "total": total, "grade": "A"},
            "lines": lines,
            "events": list(events),
            "identity": list(identity),
            "unknown_field": "score may add to its answer",
        }
    )


def decision(**fields: Any) -> DecisionRow:
    """Grace's round-robin decision for lead-1 at T0 + 10 min, due 5 min later, open."""
    defaults: dict[str, Any] = {
        "decision_id": "d-1",
        "lead_id": "lead-1",
        "route": "sdr",
        "team": "sdr-emea",
        "rep": "rep-grace",
        "rep_name": "Grace Hopper",
        "target": "Grace Hopper",
        "strategy": "round_robin",
        "reasons": ("total score 110 >= MQL threshold 60", "asked for a demo"),
        "supersedes": None,
        "received_at": T0 + 10 * MIN,
        "decided_at": T0 + 10 * MIN,
        "sla_due_at": T0 + 15 * MIN,
        "speed_ms": 300,
    }
    return DecisionRow(**{**defaults, **fields})


def stage_change(at: datetime, **fields: Any) -> dict[str, Any]:
    """A row of console.stage_changes, as `lead_story` reads it."""
    defaults = {
        "transition_id": f"lead-1:{at.isoformat()}",
        "at": at,
        "from_stage": "lead",
        "to_stage": "mql",
        "reason": "total score 110 >= MQL threshold 60",
        "by_sales": False,
        "skipped": [],
        "score": {},
    }
    return {**defaults, **fields}


def report(at: datetime, outcome: str = "accepted", reason: str | None = None) -> dict[str, Any]:
    """A row of console.feedback, as `lead_story` reads it."""
    return {
        "feedback_id": f"f-{outcome}",
        "outcome": outcome,
        "reason": reason,
        "owner_id": "rep-grace",
        "at": at,
    }


def story(
    changes: list[dict[str, Any]] = (),  # type: ignore[assignment]
    decisions: list[DecisionRow] = (),  # type: ignore[assignment]
    feedback: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> LeadStory:
    return LeadStory(
        record=RECORD,
        stage_changes=list(changes),
        decisions=list(decisions),
        feedback=list(feedback),
    )


def kinds(entries: list[Entry]) -> list[str]:
    return [entry.kind for entry in entries]


# --- the ledger ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([], 0.0),  # no line
        ([25.0, 10.0], 35.0),
        ([60.0, 29.996, -20.0], 70.0),  # decayed points, and a negative rule
        ([12.345, 0.005], 12.35),  # shown to the cent
        ([0.1] * 10, 1.0),  # no float dust
    ],
)
def test_the_ledgers_shown_sum_is_the_sum_of_the_points_as_they_count_now(
    values: list[float], shown: float
) -> None:
    lines = [line(f"m{i}", T0 + i * MIN, value) for i, value in enumerate(values)]

    ledger = ledger_of(explanation(lines, total=123))

    assert ledger.shown_sum == pytest.approx(shown, abs=1e-9)
    assert [points.value_now for points in ledger.lines] == values
    assert ledger.total == 123  # score's own total, shown beside it


def test_a_ledger_line_keeps_its_rule_reason_kind_and_points() -> None:
    ledger = ledger_of(explanation([line("m1", T0, 29.5, kind="behaviour", points=60)]))

    assert ledger.lines == (Points("rule-m1", "because of m1", "behaviour", 60, 29.5),)


# --- score's events ------------------------------------------------------------------------


def test_the_lines_of_an_event_attach_to_the_event_with_the_same_message_id() -> None:
    lines = [
        line("m1", T0, 25.0, rule_id="senior-title"),
        line("m2", T0 + 2 * MIN, 60.0, rule_id="demo-request"),
        line("m1", T0, 10.0, rule_id="work-email"),
    ]
    events = [
        {"at": T0, "message_id": "m1", "what": "identify"},
        {"at": T0 + 2 * MIN, "message_id": "m2", "what": "Demo Requested"},
        {"at": T0 + 3 * MIN, "message_id": "m3", "what": "page /pricing"},  # no points
    ]

    entries = timeline_of(story(), explanation(lines, events))

    assert [(e.title, [p.rule_id for p in e.points]) for e in entries] == [
        ("identify", ["senior-title", "work-email"]),
        ("Demo Requested", ["demo-request"]),
        ("page /pricing", []),
    ]
    assert kinds(entries) == ["event"] * 3


def test_lines_of_an_event_score_did_not_list_still_appear_at_their_events_time() -> None:
    lines = [
        line("old", T0 - 3 * MIN, 5.0),  # an event older than what score lists
        line("old", T0 - 2 * MIN, 2.0),
        line("fit", T0 - 9 * MIN, 20.0, kind="fit"),  # the profile's fit points
        line("m1", T0, 1.0),
    ]
    events = [{"at": T0, "message_id": "m1", "what": "page /docs"}]

    entries = timeline_of(story(), explanation(lines, events))

    assert [(e.at, e.title, len(e.points)) for e in entries] == [
        (T0 - 9 * MIN, "profile", 1),
        (T0 - 3 * MIN, "scored event", 2),  # at its first line's time
        (T0, "page /docs", 1),
    ]


def test_every_ledger_line_is_on_the_timeline_once() -> None:
    lines = [
        line("m1", T0, 25.0),
        line("m1", T0, 10.0),
        line("m2", T0 + MIN, 29.996),
        line("gone", T0 - MIN, -20.0),
        line("fit", T0 - 2 * MIN, 15.0, kind="fit"),
    ]
    events = [
        {"at": T0, "message_id": "m1", "what": "identify"},
        {"at": T0 + MIN, "message_id": "m2", "what": "Demo Requested"},
    ]
    told = explanation(lines, events)

    shown = [points for entry in timeline_of(story(), told) for points in entry.points]

    assert sorted(shown, key=repr) == sorted(ledger_of(told).lines, key=repr)
    assert round(sum(p.value_now for p in shown), 2) == ledger_of(told).shown_sum


def test_identity_history_is_on_the_timeline() -> None:
    identity = [
        {
            "at": T0 + MIN,
            "what": "merged",
            "detail": "anonymous visitor anon-1 joined",
            "other_lead_id": "lead-0",
        }
    ]

    entries = timeline_of(story(), explanation([], identity=identity))

    assert entries == [
        Entry(
            at=T0 + MIN, kind="identity", title="merged", detail="anonymous visitor anon-1 joined"
        )
    ]


def test_without_scores_explanation_the_timeline_is_what_the_console_holds() -> None:
    entries = timeline_of(story([stage_change(T0)], [decision()], [report(T0 + 20 * MIN)]), None)

    assert kinds(entries) == ["stage", "decision", "crm"]


# --- what the console holds ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "title", "detail"),
    [
        (
            {},
            "lead → mql",
            "total score 110 >= MQL threshold 60",
        ),
        (
            {
                "from_stage": "lead",
                "to_stage": "sql",
                "skipped": ["mql"],
                "by_sales": True,
                "reason": "accepted in Salesforce",
            },
            "lead → sql (skipped mql)",
            "accepted in Salesforce (reported by sales)",
        ),
        (
            {"from_stage": "lead", "to_stage": "customer", "skipped": ["mql", "sql", "sqo"]},
            "lead → customer (skipped mql, sql, sqo)",
            "total score 110 >= MQL threshold 60",
        ),
    ],
)
def test_a_stage_change_says_where_from_where_to_and_why(
    fields: dict[str, Any], title: str, detail: str
) -> None:
    (entry,) = timeline_of(story([stage_change(T0, **fields)]), None)

    assert (entry.at, entry.kind, entry.title, entry.detail) == (T0, "stage", title, detail)


@pytest.mark.parametrize(
    ("row", "then"),
    [
        pytest.param(decision(), [], id="open: the decision alone"),
        pytest.param(
            decision(accepted_at=T0 + 12 * MIN, closed_at=T0 + 12 * MIN),
            [("sla", T0 + 12 * MIN, "accepted by Grace Hopper", "SLA met")],
            id="accepted in time",
        ),
        pytest.param(
            decision(accepted_at=T0 + 15 * MIN),
            [("sla", T0 + 15 * MIN, "accepted by Grace Hopper", "SLA met")],
            id="accepted at the due time",
        ),
        pytest.param(
            decision(accepted_at=T0 + 40 * MIN),
            [("sla", T0 + 40 * MIN, "accepted by Grace Hopper", "SLA breached")],
            id="accepted late",
        ),
        pytest.param(
            decision(sla_due_at=None, accepted_at=T0 + 3 * 24 * 60 * MIN),
            [("sla", T0 + 3 * 24 * 60 * MIN, "accepted by Grace Hopper", "SLA met")],
            id="no SLA",
        ),
        pytest.param(
            decision(closed_at=T0 + 15 * MIN, closed_reason="SLA breached: sla_reassigned"),
            [
                (
                    "closed",
                    T0 + 15 * MIN,
                    "decision for Grace Hopper no longer holds",
                    "SLA breached: sla_reassigned",
                )
            ],
            id="replaced on breach",
        ),
        pytest.param(
            decision(closed_at=T0 + 15 * MIN),
            [("closed", T0 + 15 * MIN, "decision for Grace Hopper no longer holds", "")],
            id="closed without a reason",
        ),
    ],
)
def test_a_decision_is_followed_by_what_became_of_it(
    row: DecisionRow, then: list[tuple[str, datetime, str, str]]
) -> None:
    entries = timeline_of(story(decisions=[row]), None)

    assert [(e.kind, e.at, e.title, e.detail) for e in entries] == [
        (
            "decision",
            T0 + 10 * MIN,
            "routed to sdr: Grace Hopper by round robin",
            "total score 110 >= MQL threshold 60; asked for a demo",
        ),
        *then,
    ]


@pytest.mark.parametrize(
    ("row", "title"),
    [
        (decision(strategy=None), "routed to sdr: Grace Hopper"),
        (
            decision(route="nurture", target="track high-fit-nurture", strategy="nurture_track"),
            "routed to nurture: track high-fit-nurture by nurture track",
        ),
        (
            decision(target="queue sdr-unassigned", strategy="fallback_queue"),
            "routed to sdr: queue sdr-unassigned by fallback queue",
        ),
    ],
)
def test_a_decision_names_its_route_target_and_strategy(row: DecisionRow, title: str) -> None:
    (entry,) = timeline_of(story(decisions=[row]), None)

    assert entry.title == title


@pytest.mark.parametrize(("reason", "detail"), [("student", "student"), (None, "")])
def test_a_crm_report_says_its_outcome_and_reason(reason: str | None, detail: str) -> None:
    (entry,) = timeline_of(story(feedback=[report(T0, "disqualified", reason)]), None)

    assert (entry.kind, entry.title, entry.detail) == ("crm", "CRM reported disqualified", detail)


# --- order ---------------------------------------------------------------------------------


def test_entries_are_in_time_order_whatever_their_source() -> None:
    told = explanation(
        [line("m1", T0 + 5 * MIN, 60.0), line("m0", T0, 10.0)],
        events=[
            {"at": T0 + 5 * MIN, "message_id": "m1", "what": "Demo Requested"},
            {"at": T0, "message_id": "m0", "what": "identify"},
        ],
        identity=[{"at": T0 + 2 * MIN, "what": "merged", "detail": ""}],
    )
    held = story(
        changes=[stage_change(T0 + 6 * MIN), stage_change(T0 + MIN, to_stage="lead")],
        decisions=[decision(accepted_at=T0 + 12 * MIN)],
        feedback=[report(T0 + 12 * MIN + timedelta(seconds=1))],
    )

    entries = timeline_of(held, told)

    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert kinds(entries) == [
        "event",
        "stage",
        "identity",
        "event",
        "stage",
        "decision",
        "sla",
        "crm",
    ]


def test_entries_at_one_time_follow_the_kind_order() -> None:
    # A message that changed the score, the stage and the route at once, then a merge, an
    # acceptance and its CRM report all stamped with that time.
    told = explanation(
        [line("m1", T0, 60.0)],
        events=[{"at": T0, "message_id": "m1", "what": "Demo Requested"}],
        identity=[{"at": T0, "what": "merged", "detail": ""}],
    )
    held = story(
        changes=[stage_change(T0)],
        decisions=[
            decision(decided_at=T0, accepted_at=T0),
            decision(decision_id="d-0", decided_at=T0, closed_at=T0, closed_reason="replaced"),
        ],
        feedback=[report(T0)],
    )

    entries = timeline_of(held, told)

    assert kinds(entries) == [
        "event",
        "identity",
        "stage",
        "decision",
        "decision",
        "sla",
        "closed",
        "crm",
    ]
