"""A lead's routing events in sequence order across the three routing topics, held at most the
reorder wait; events without a sequence never held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.sync.events import Event
from services.sync.ordering import LeadOrder, arrange, skipped

NOW = datetime(2026, 12, 7, 10, 0, 0, tzinfo=UTC)
WAIT = timedelta(seconds=2)


def routing(sequence: int | None, kind: str = "decisions") -> Event:
    return Event(
        kind=kind,  # type: ignore[arg-type]
        event_id=f"{kind}-{sequence}",
        lead_id="lead-1",
        sequence=sequence,
        route="sdr",
        stage="mql",
        timestamp=NOW,
        received_at=NOW,
        data={},
    )


def lifecycle() -> Event:
    return Event(kind="lifecycle", event_id="t-1", lead_id="lead-1", sequence=None, route=None,
                 stage="mql", timestamp=NOW, received_at=NOW, data={})  # fmt: skip


def sequences(events: list[Event]) -> list[int | None]:
    return [event.sequence for event in events]


def test_events_in_order_go_at_once() -> None:
    out, order = arrange(LeadOrder("lead-1"), [routing(1), routing(2)], now=NOW, wait=WAIT)
    assert sequences(out) == [1, 2]
    assert order.last_sequence == 2
    assert order.held == ()
    assert order.held_until is None


def test_a_batch_is_sorted_by_sequence() -> None:
    out, order = arrange(
        LeadOrder("lead-1"), [routing(3, "withdrawals"), routing(1), routing(2)], now=NOW, wait=WAIT
    )
    assert sequences(out) == [1, 2, 3]
    assert order.last_sequence == 3


def test_an_event_past_a_gap_is_held_until_its_predecessor_arrives() -> None:
    out, order = arrange(LeadOrder("lead-1", last_sequence=1), [routing(3)], now=NOW, wait=WAIT)
    assert out == []
    assert sequences([h.event for h in order.held]) == [3]
    assert order.held_until == NOW + WAIT
    later = NOW + timedelta(seconds=1)
    out, order = arrange(order, [routing(2, "withdrawals")], now=later, wait=WAIT)
    assert sequences(out) == [2, 3]
    assert [e.kind for e in out] == ["withdrawals", "decisions"]
    assert order.last_sequence == 3
    assert order.held == ()


def test_a_hold_that_runs_out_releases_everything_up_to_it_giving_up_the_gap() -> None:
    _, order = arrange(LeadOrder("lead-1", last_sequence=1), [routing(3)], now=NOW, wait=WAIT)
    _, order = arrange(order, [routing(5)], now=NOW + timedelta(seconds=1), wait=WAIT)
    out, order = arrange(order, [], now=NOW + timedelta(seconds=1.5), wait=WAIT)
    assert out == []
    assert len(order.held) == 2
    out, order = arrange(order, [], now=NOW + WAIT, wait=WAIT)
    assert sequences(out) == [3]  # 3 ran out; 5 waits on for 4, its own wait not yet over
    assert order.last_sequence == 3
    assert sequences([h.event for h in order.held]) == [5]
    assert skipped(1, out) == 1
    out, order = arrange(order, [], now=NOW + timedelta(seconds=3), wait=WAIT)
    assert sequences(out) == [5]
    assert order.held == ()


def test_a_late_event_older_than_what_was_released_goes_at_once() -> None:
    out, order = arrange(LeadOrder("lead-1", last_sequence=5), [routing(4)], now=NOW, wait=WAIT)
    assert sequences(out) == [4]
    assert order.last_sequence == 5


def test_events_without_a_sequence_are_never_held() -> None:
    arriving = [lifecycle(), routing(None), routing(7)]
    out, order = arrange(LeadOrder("lead-1", last_sequence=2), arriving, now=NOW, wait=WAIT)
    assert [e.event_id for e in out] == ["t-1", "decisions-None"]
    assert sequences([h.event for h in order.held]) == [7]


def test_no_wait_holds_nothing() -> None:
    out, order = arrange(LeadOrder("lead-1"), [routing(4)], now=NOW, wait=timedelta(0))
    assert sequences(out) == [4]
    assert order.held == ()
    assert order.last_sequence == 4


def test_the_same_sequence_twice_is_one_event() -> None:
    out, _ = arrange(LeadOrder("lead-1"), [routing(1), routing(1)], now=NOW, wait=WAIT)
    assert sequences(out) == [1]


def test_skipped_counts_the_sequences_never_seen() -> None:
    assert skipped(1, [routing(2), routing(3)]) == 0
    assert skipped(1, [routing(4), routing(7)]) == 4
    assert skipped(5, [routing(4)]) == 0
